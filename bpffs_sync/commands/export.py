"""`bpffs-sync export`: the checks of its arguments (every bad value: exit 2, one line), then the
Prometheus endpoint (the exporter itself: bpffs_sync/export/) or, with --check, the daemon's health."""

from __future__ import annotations

import argparse
import os

from bpffs_sync.commands.common import version
from bpffs_sync.errors import UsageError

DEFAULT_PORT = 9847


def _check(args: argparse.Namespace) -> None:
    if not 0 <= args.port <= 65535:
        raise UsageError("--port", str(args.port), 0, "not a TCP port (0-65535)")
    if args.max_depth is not None and args.max_depth < 0:
        raise UsageError("--max-depth", str(args.max_depth), 0, "must be >= 0")
    if not 1 <= args.bucket_stride <= 26:
        raise UsageError("--bucket-stride", str(args.bucket_stride), 0, "must be 1..26")
    if args.bucket_stride != 1 and args.detail != "buckets":
        raise UsageError("--bucket-stride", str(args.bucket_stride), 0, "only with --detail buckets")
    if args.verify_interval < 0:
        raise UsageError("--verify-interval", str(args.verify_interval), 0, "must be >= 0")
    if not args.stale_after > 0:
        raise UsageError("--stale-after", str(args.stale_after), 0, "must be > 0")
    for glob in (*args.include, *args.exclude):
        if not glob.startswith(("/", "*", "?", "[")):
            raise UsageError("--include/--exclude", glob, 0, "a cgroup path glob starts with / (e.g. /jobs/*)")


def main(args: argparse.Namespace) -> int:
    from bpffs_sync import preflight
    from bpffs_sync.backends import kernel_a1
    from bpffs_sync.errors import EnvironmentProblem, SyncError
    from bpffs_sync.export.files import Filter
    from bpffs_sync.export.server import ExportOptions, serve

    _check(args)
    bpffs_dir = os.path.abspath(args.bpffs or preflight.DEFAULT_BPFFS)
    if not os.path.isdir(bpffs_dir):
        raise EnvironmentProblem("export", bpffs_dir, 0, "no such directory (--bpffs)")
    if args.check:
        return check(bpffs_dir, args.stale_after)
    cgroup_root = args.cgroup_root
    if cgroup_root is None:
        try:
            cgroup_root = preflight.default_cgroup_root()
        except SyncError:
            cgroup_root = None
    root = os.geteuid() == 0  # verify and the kernel links ask the kernel about pins and links
    verify_interval = args.verify_interval if root else 0.0
    opts = ExportOptions(
        bpffs=bpffs_dir, cgroup_root=cgroup_root, address=args.address, port=args.port,
        filter=Filter(args.max_depth, tuple(args.include), tuple(args.exclude)), bucket_stride=args.bucket_stride,
        detail=args.detail, verify_interval=verify_interval, kernel_links=root and kernel_a1.supported(),
        version=version(), stale_after=args.stale_after)
    try:
        return serve(opts)
    except OSError as err:  # the bind: address in use, not an address of this host
        raise EnvironmentProblem("export", f"{args.address}:{args.port}", err.errno or 0, "cannot listen") from err


def check(bpffs_dir: str, stale_after: float) -> int:
    """`export --check`: the daemon's health as /healthz says it, one line on stdout; 0 ok, 1 not (an exec probe
    for the daemon's container that does not depend on the exporter answering)."""
    import time

    from bpffs_sync.export import published

    ok, reason = published.judge(published.read(bpffs_dir), time.time(), stale_after)
    print(reason)
    return 0 if ok else 1
