"""The `bpffs-sync` command line. Exit codes: 0 ok / in sync, 1 drift (verify), 2 usage or
environment error (one line on stderr, never a traceback)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from bpffs_sync import log, preflight
from bpffs_sync.errors import SyncError, UsageError
from bpffs_sync.programs import CATALOGUE, lookup

EXIT_OK, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2
BENCHES = ("lag", "sync", "read")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"bpffs-sync: error: {message} (see --help)\n")


def _logging(p: argparse.ArgumentParser, top: bool = False) -> None:
    """--log-format/--log-level, accepted before and after the subcommand."""
    default: object = argparse.SUPPRESS
    p.add_argument("--log-format", choices=("auto", "console", "json"),
                   default="auto" if top else default, help="console on a TTY, else JSON lines (auto)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info" if top else default)


def _common(p: argparse.ArgumentParser) -> None:
    _logging(p)
    p.add_argument("--bpffs", help="bpffs mount to populate (default /sys/fs/bpf, mounted if absent)")
    p.add_argument("--cgroup-root", help="cgroup v2 directory to mirror (default: the cgroup2 mount)")
    p.add_argument("--program", action="append", metavar="NAME",
                   help="stat program to expose in the v2 tree (repeatable; default hist_oncpu)")


def _v1(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--v1", action="append", metavar="CTRL|HIERARCHY|all|DIR",
                   help=f"{what} a cgroup-v1 hierarchy too: a controller (memory), a hierarchy name "
                        "(cpu,cpuacct, name=systemd), all, or a v1 cgroup directory (repeatable)")


def _print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def _selection(args: argparse.Namespace) -> Any:
    """The --v1 selectors, validated (an unknown controller is KernelUnsupported), or None."""
    from bpffs_sync.mirror.forest import Selection

    return Selection(args.v1) if getattr(args, "v1", None) else None


def cmd_run(args: argparse.Namespace) -> int:
    from bpffs_sync.mirror.daemon import RunOptions, run

    if args.kernel:
        return _run_kernel(args)
    selection = _selection(args)
    layout, specs = _prepare(args)
    _refuse_kernel_mirror(layout.bpffs)
    opts = RunOptions(resync_interval=args.resync_interval, watch=not args.no_watch, once=args.once,
                      force_raw_tp=args.raw_tp)
    return run(layout, specs, opts, selection)


def cmd_verify(args: argparse.Namespace) -> int:
    from bpffs_sync.commands.verify import verify, verify_forest
    from bpffs_sync.mirror.forest import resolve_now
    from bpffs_sync.programs import lookup as lookup_program

    if args.kernel:
        return _verify_kernel(args)
    selection = _selection(args)
    layout, specs = _prepare(args, mount=False)
    if selection is not None:
        trees = resolve_now(selection, layout.bpffs)
        preflight.require_objects([lookup_program(n) for t in trees for n in t.stats])
        report: Any = verify_forest(selection, trees, layout.bpffs)
    else:
        report = verify(layout, specs)
    if args.json:
        _print_json(report.to_json())
    else:
        print(report.to_text())
    return EXIT_OK if report.in_sync else EXIT_DRIFT


def _refuse_kernel_mirror(bpffs_dir: str) -> None:
    """The user-space mirror cannot write into a tree the kernel owns."""
    from bpffs_sync.backends import kernel_a1

    if kernel_a1.mirror_enabled(bpffs_dir):
        raise UsageError("run", bpffs_dir, 0, "this bpffs holds the kernel's mirror (cgroup_mirror): use --kernel")


def _run_kernel(args: argparse.Namespace) -> int:
    """run --kernel: attach one cgroup stat link per stat and leave (the kernel keeps the tree)."""
    from dataclasses import asdict

    from bpffs_sync.backends import kernel_a1

    if args.v1:
        raise UsageError("run --kernel", "--v1", 0, "the kernel series mirrors cgroup v2 only (v1 is part 2)")
    layout, specs = _prepare(args, mount=True, objects=False)
    outcomes = kernel_a1.attach_stats(layout, specs, force_raw_tp=args.raw_tp)
    if args.json:
        _print_json({"mirror_root": layout.mirror_root, "cgroup_root": layout.cgroup_root,
                     "links": [asdict(o) for o in outcomes]})
    else:
        for o in outcomes:
            print(f"{o.action:<8} {o.stat}: link {o.link_id}, {o.nr_files} files, {o.nr_errors} errors "
                  f"(pinned at {o.pin})")
    return EXIT_OK


def _verify_kernel(args: argparse.Namespace) -> int:
    """verify --kernel: the mirror a patched kernel keeps itself (kernel_a1.py)."""
    from bpffs_sync.backends import kernel_a1

    preflight.require_root()
    kernel_a1.require_supported()
    bpffs_dir = args.bpffs or preflight.DEFAULT_BPFFS
    report = kernel_a1.verify(bpffs_dir, args.cgroup_root or preflight.default_cgroup_root())
    if args.json:
        _print_json(report.to_json())
    else:
        print(report.to_text())
    return EXIT_OK if report.in_sync else EXIT_DRIFT


def cmd_status(args: argparse.Namespace) -> int:
    from bpffs_sync.commands.status import status, to_text

    layout, specs = _prepare(args, mount=False, objects=False)
    doc = status(layout, specs)
    if args.json:
        _print_json(doc)
    else:
        print(to_text(doc))
    return EXIT_OK


def cmd_clean(args: argparse.Namespace) -> int:
    from bpffs_sync.commands.clean import clean

    layout, specs = _prepare(args, mount=False, objects=False)
    if args.kernel:
        from bpffs_sync.backends import kernel_a1

        names = [s.name for s in specs] if args.program else list(CATALOGUE)
        removed = kernel_a1.clean(layout, names)
    else:
        removed = clean(layout)
    if args.json:
        _print_json({"removed": removed})
    else:
        print(f"removed {removed} entries under {layout.bpffs}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from bpffs_sync.commands.demo import demo

    layout, specs = _prepare(args, mount=False)
    return demo(layout, specs, seconds=args.seconds)


def cmd_bench(args: argparse.Namespace) -> int:
    from bpffs_sync.measure.bench import bench, render

    unknown = sorted(set(args.what) - set(BENCHES))
    if unknown:  # checked here: argparse's choices reject an empty nargs="*" list on 3.11
        raise UsageError("bench", ", ".join(unknown), 0, f"unknown benchmark (choose from {', '.join(BENCHES)})")

    preflight.require_root()
    preflight.require_kernel()
    preflight.require_objects([lookup("hist_oncpu")])
    if args.log_level == "info":  # the figures are the output; keep the loader's chatter out
        log.setup(args.log_format, "warning")
    doc = bench(args.what or list(BENCHES), counts=args.count, reads=args.reads)
    if args.json:
        _print_json(doc)
    else:
        print(render(doc))
    return EXIT_OK


def _prepare(args: argparse.Namespace, mount: bool = True, objects: bool = True) -> tuple[Any, Any]:
    preflight.require_root()
    preflight.require_kernel()
    layout, specs = preflight.resolve(args.bpffs, args.cgroup_root, getattr(args, "program", None))
    if objects:
        preflight.require_objects(specs)
    if mount:
        preflight.prepare_bpffs(layout)
    else:
        from bpffs_sync.mirror import bpffs

        bpffs.ensure_bpffs(layout.bpffs, mount_if_absent=False)
    return layout, specs


def _add_export(sub: Any) -> None:
    """`export`: the Prometheus endpoint (bpffs_sync/export/; its arguments are checked there)."""
    from bpffs_sync.export.command import add_arguments

    p = sub.add_parser("export", help="serve Prometheus metrics: per-cgroup stats from the mirror, mirror health")
    _logging(p)
    add_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    from bpffs_sync.export.command import version

    parser = _Parser(prog="bpffs-sync", description="Mirror cgroupfs into bpffs with per-cgroup BPF stat files.")
    parser.add_argument("--version", action="version", version=f"bpffs-sync {version()}")
    _logging(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("run", help="keep the mirror in step with cgroupfs (foreground daemon)")
    _common(p)
    p.add_argument("--resync-interval", type=float, default=30.0, metavar="S",
                   help="seconds between full passes (±10%% jitter; default 30)")
    p.add_argument("--no-watch", action="store_true", help="no inotify: periodic full passes only")
    p.add_argument("--once", action="store_true", help="one full pass, then exit")
    p.add_argument("--raw-tp", action="store_true", help="use the raw_tp collector even if tp_btf works")
    p.add_argument("--kernel", action="store_true",
                   help="patched kernel: attach one cgroup stat link per stat and exit; the kernel keeps the tree")
    p.add_argument("--json", action="store_true", help="with --kernel: the links as one JSON document")
    _v1(p, "mirror")
    p.set_defaults(func=cmd_run)

    for name, func, text in (
        ("verify", cmd_verify, "check that bpffs mirrors cgroupfs (exit 1 on drift)"),
        ("status", cmd_status, "daemon and kernel-object status"),
        ("clean", cmd_clean, "remove the mirror and the pinned collectors (daemon must be stopped)"),
    ):
        p = sub.add_parser(name, help=text)
        _common(p)
        p.add_argument("--json", action="store_true", help="one JSON document on stdout")
        if name == "verify":
            _v1(p, "verify only")
            p.add_argument("--kernel", action="store_true",
                           help="verify the mirror a patched kernel keeps (kernel-approach1 cgroup stat links)")
        if name == "clean":
            p.add_argument("--kernel", action="store_true",
                           help="detach the kernel's cgroup stat links (of --program, default every catalogued "
                                "stat) and drop the pins")
        p.set_defaults(func=func)

    p = sub.add_parser("demo", help="make jobs/a, burn CPU in it, show its hist_oncpu, verify, clean up")
    _common(p)
    p.add_argument("--seconds", type=float, default=1.0, help="how long the CPU burner runs")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="benchmarks, each against a baseline measured in the same run")
    _logging(p)
    p.add_argument("what", nargs="*", metavar="{lag,sync,read}",
                   help="which benchmarks (default: all)")
    p.add_argument("--count", type=int, action="append", help="cgroups for lag/sync (repeatable)")
    p.add_argument("--reads", type=int, default=2000, help="reads per file for `read`")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
    _add_export(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Cgroup names are bytes; undecodable ones travel as surrogate escapes and print back verbatim.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    args = build_parser().parse_args(argv)
    log.setup(args.log_format, args.log_level)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SyncError as err:
        print(f"bpffs-sync: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `bpffs-sync status --json | head`: the reader left; so do we, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as err:  # a bug: still one line, with a pointer to the full story
        if args.log_level == "debug":
            raise
        print(f"bpffs-sync: internal error: {type(err).__name__}: {err} (rerun with --log-level debug)",
              file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
