"""`bpffs-sync export`: its arguments and their validation (every bad value: exit 2, one line)."""

from __future__ import annotations

import argparse
import os
from importlib import metadata

from bpffs_sync.errors import UsageError
from bpffs_sync.export.published import STALE_AFTER
from bpffs_sync.export.render import DETAILS, SUMMARY

DEFAULT_PORT = 9847


def version() -> str:
    """The installed distribution's version ("unknown" when run from a tree that was never installed)."""
    try:
        return metadata.version("bpffs-sync")
    except metadata.PackageNotFoundError:
        return "unknown"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bpffs", help="bpffs holding the mirror (default /sys/fs/bpf)")
    p.add_argument("--cgroup-root", help="cgroup v2 root for verify when no daemon runs (default: the cgroup2 mount)")
    p.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1; :: for all)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0: any)")
    p.add_argument("--max-depth", type=int, metavar="N",
                   help="export cgroups at most N levels below the root (root = 0; default: all)")
    p.add_argument("--include", action="append", default=[], metavar="GLOB",
                   help="export only cgroups whose path (/jobs/a) matches a glob (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="do not export cgroups whose path matches this glob (repeatable)")
    p.add_argument("--detail", choices=DETAILS, default=SUMMARY,
                   help="per-cgroup detail: summary (default: _sum and _count of each distribution, at most 10 "
                        "series per cgroup) or buckets (histograms with their log2 buckets: 29 series each)")
    p.add_argument("--bucket-stride", type=int, default=1, metavar="K",
                   help="with --detail buckets: keep every K-th log2 bucket boundary (default 1: all 26)")
    p.add_argument("--verify-interval", type=float, default=0.0, metavar="S",
                   help="as root, with no daemon publishing its drift: seconds between verify runs for the drift "
                        "metrics (default 0: never)")
    p.add_argument("--stale-after", type=float, default=STALE_AFTER, metavar="N",
                   help=f"/healthz fails when the daemon's last pass is more than N resync intervals old "
                        f"(default {STALE_AFTER:g})")
    p.add_argument("--check", action="store_true",
                   help="do not serve: print /healthz's verdict on the daemon and exit 0 (ok) or 1 (a probe)")
    p.set_defaults(func=run)


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


def run(args: argparse.Namespace) -> int:
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
