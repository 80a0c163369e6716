"""The `bpffs-sync` command line. Exit codes: 0 ok / in sync, 1 drift (verify), 2 usage or
environment error (one line on stderr, never a traceback)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

from bpffs_sync import log, preflight, printable, rundir
from bpffs_sync.errors import EnvironmentProblem, SyncError, UsageError
from bpffs_sync.programs import lookup

EXIT_OK, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2
BENCHES = ("lag", "sync", "sustained", "read", "export", "hostile")
RESYNC_BOUNDS = (0.1, 86400.0)  # seconds: a busy loop below, "never" above (use --no-watch/--once for that)
DEFAULT_RESYNC = 30.0


# --- option values: each a type that turns a bad value into argparse's one-line usage error ------


def bounded(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], Any]:
    """A finite number in [low, high] (nan, inf and out-of-range values are usage errors)."""
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r} is out of range ({low:g} .. {high:g})")
        return value
    return parse


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _size(text: str) -> int:
    """A memory size: bytes, or a number with K, M or G (binary units), 16M .. 1024G."""
    unit = text[-1:].upper() if text[-1:].isalpha() else ""
    number = text[:-1] if unit else text
    if unit not in _UNITS or not number.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (bytes, or a number with K, M or G)")
    value = int(number) * _UNITS[unit]
    if not 16 << 20 <= value <= 1 << 40:
        raise argparse.ArgumentTypeError(f"{text!r} is out of range (16M .. 1024G)")
    return value


def _path(text: str) -> str:
    """A non-empty path (an empty --bpffs must not silently mean the default)."""
    if not text:
        raise argparse.ArgumentTypeError("empty path")
    return text


def _v1_selector(text: str) -> str:
    if not text:
        raise argparse.ArgumentTypeError("empty selector")
    return text


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
    _bpffs(p)
    p.add_argument("--cgroup-root", type=_path, metavar="DIR",
                   help="cgroup v2 directory to mirror (default: the cgroup2 mount)")
    p.add_argument("--program", action="append", metavar="NAME",
                   help="stat program to expose in the v2 tree (repeatable; default hist_oncpu)")


def _bpffs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bpffs", type=_path, metavar="DIR",
                   help="the root of the bpffs to populate (default /sys/fs/bpf, mounted if absent); not a "
                        "directory inside one")


def _v1(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--v1", action="append", type=_v1_selector, metavar="CTRL|HIERARCHY|all|DIR",
                   help=f"{what} a cgroup-v1 hierarchy too: a controller (memory), a hierarchy name "
                        "(cpu,cpuacct, name=systemd), all, or a v1 cgroup directory (repeatable)")


def _modes(p: argparse.ArgumentParser) -> None:
    """Which backend (backends/): by default the kernel series when the running kernel has it, else
    the user-space mirror."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--user-space", dest="mode", action="store_const", const="user-space",
                   help="the user-space mirror (a daemon pinning one cgroup iterator per cgroup), even on a "
                        "kernel with the series")
    g.add_argument("--kernel", dest="mode", action="store_const", const="kernel",
                   help="the kernel-approach1 series: one cgroup stat link per stat; the kernel keeps the tree "
                        "(an error on a kernel without it)")
    p.add_argument("--approach", type=int, choices=(1, 2), metavar="{1,2}",
                   help="1: a bpffs mirror (default); 2: bpf.stat.<name> files in cgroupfs (kernel-approach2)")


def _file_mode(text: str) -> int:
    """Octal permission bits for stat files: read bits only, the owner's included."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an octal mode") from None
    if mode & ~0o444 or not mode & 0o400:
        raise argparse.ArgumentTypeError(f"{text!r}: stat files are read-only: a subset of 0444 with 0400")
    return mode


def _file_group(text: str) -> int:
    """A group name or number, resolved now (an unknown group is a usage error)."""
    import grp

    try:
        return grp.getgrnam(text).gr_gid if not text.isdigit() else grp.getgrgid(int(text)).gr_gid
    except (KeyError, OverflowError):
        raise argparse.ArgumentTypeError(f"{text!r}: no such group") from None


def _access(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file-mode", type=_file_mode, metavar="OCTAL",
                   help="permission bits of stat files (default 0444: anyone may read, like cpu.stat); "
                        "e.g. 0440 with --file-group")
    p.add_argument("--file-group", type=_file_group, metavar="GROUP",
                   help="group of stat files (default root)")


def _with_daemon_access(args: argparse.Namespace, layout: Any) -> Any:
    """verify judges stat files' access by what the running daemon was told (its telemetry), unless
    --file-mode/--file-group say otherwise; with no daemon, by the defaults."""
    from dataclasses import replace

    from bpffs_sync.commands.status import daemon_status

    if args.file_mode is not None or args.file_group is not None:
        return layout
    doc = daemon_status(layout)
    if doc.get("running") and "file_mode" in doc:
        return replace(layout, file_mode=int(doc["file_mode"]), file_gid=int(doc.get("file_gid", 0)))
    return layout


def _print_json(doc: Any) -> None:
    """A --json document: names that are not UTF-8 as escaped text + `<field>_b64` (printable.json_safe)."""
    json.dump(printable.json_safe(doc), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def _selection(args: argparse.Namespace) -> Any:
    """The --v1 selectors, validated (an unknown controller is KernelUnsupported), or None."""
    from bpffs_sync.mirror.forest import Selection

    if not getattr(args, "v1", None):
        return None
    selection = Selection(args.v1)
    preflight.require_v1_paths(args.v1)
    return selection


def _refuse(command: str, args: argparse.Namespace, why: str, *options: str) -> None:
    """Options that make no sense together are refused, never silently ignored."""
    given = [o for o in options if getattr(args, o.lstrip("-").replace("-", "_"), None) not in (None, False, [])]
    if given:
        raise UsageError(command, " ".join(given), 0, why)


# --- the mode: which backend keeps the mirror (backends/) -------------------------------------------

_FLAG = {"user-space": "--user-space", "kernel": "--kernel", "approach-2": "--approach 2"}


def _mode(args: argparse.Namespace) -> str:
    """auto | user-space | kernel | approach-2, from --user-space / --kernel / --approach."""
    mode: str = getattr(args, "mode", None) or "auto"
    if getattr(args, "approach", None) == 2:
        if mode == "user-space":
            raise UsageError("--approach 2", "--user-space", 0, "Approach 2 is the kernel's alone (bpf.stat.* files "
                                                              "in cgroupfs): no user-space mirror of it")
        mode = "approach-2"
    return mode


def _given(args: argparse.Namespace, *options: str) -> list[str]:
    return [o for o in options if getattr(args, o.lstrip("-").replace("-", "_"), None) not in (None, False, [])]


def _backend(command: str, args: argparse.Namespace) -> Any:
    """The backend for this command, after refusing the options it would ignore: an explicit mode's
    refusals come before any kernel probe, auto's once the probe has chosen."""
    from bpffs_sync.backends import backend_class

    mode = _mode(args)
    cls = backend_class(mode)
    for key, why in cls.refuses.items():
        cmd, option = key.split(" ", 1)
        if cmd == command and _given(args, option):
            flag = _FLAG.get(mode, "")
            raise UsageError(f"{command} {flag}".rstrip(), option, 0,
                             f"not with {flag} ({why})" if flag else why)
    cls.require()
    return cls()


def _request(args: argparse.Namespace, layout: Any, specs: Any, selection: Any = None) -> Any:
    from bpffs_sync.backends.base import Request

    return Request(layout, specs, selection, programs_given=bool(getattr(args, "program", None)))


def cmd_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from bpffs_sync.mirror.daemon import RunOptions

    _refuse("run --once", args, "not with --once (one pass, no watcher, no resync)",
            *(("--no-watch", "--resync-interval") if args.once else ()))
    backend = _backend("run", args)
    selection = _selection(args)
    layout, specs = _prepare(args, objects=backend.mode == "user-space", loads=True)
    interval = DEFAULT_RESYNC if args.resync_interval is None else args.resync_interval
    opts = RunOptions(resync_interval=interval, watch=not args.no_watch, once=args.once, force_raw_tp=args.raw_tp)
    if args.memory_budget:
        from bpffs_sync import membudget

        membudget.configure(args.memory_budget)
    result = backend.run(replace(_request(args, layout, specs, selection), run=opts))
    if args.json:
        _print_json({"mode": backend.mode, **result.doc})
    else:
        for line in result.text:
            print(line)
    return int(result.code)


def cmd_verify(args: argparse.Namespace) -> int:
    backend = _backend("verify", args)
    selection = _selection(args)
    layout, specs = _prepare(args, mount=False, objects=False)
    if backend.mode == "user-space":
        layout = _with_daemon_access(args, layout)
    report = backend.verify(_request(args, layout, specs, selection))
    if args.json:
        _print_json(report.to_json())
    else:
        print(report.to_text())  # names escaped where the text is composed (printable.escape)
    return EXIT_OK if report.in_sync else EXIT_DRIFT


def cmd_status(args: argparse.Namespace) -> int:
    from bpffs_sync.commands.status import status, to_text

    backend = _backend("status", args)
    layout, specs = _prepare(args, mount=False, objects=False)
    doc = status(backend, _request(args, layout, specs))
    if args.json:
        _print_json(doc)
    else:
        print(to_text(doc))
    return EXIT_OK


def cmd_clean(args: argparse.Namespace) -> int:
    backend = _backend("clean", args)
    layout, specs = _prepare(args, mount=False, objects=False)
    removed = backend.clean(_request(args, layout, specs))
    if args.json:
        _print_json({"mode": backend.mode, "removed": removed})
    else:
        print(f"removed {removed} entries under {printable.escape(layout.bpffs)}")
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    """SIGTERM to the process holding this bpffs's lock, if it is a bpffs-sync run; wait until it lets go."""
    preflight.require_root()
    bpffs_dir = os.path.abspath(args.bpffs or preflight.DEFAULT_BPFFS)
    if args.bpffs is None and not preflight.is_bpffs(bpffs_dir):
        print(f"no bpffs at {printable.escape(bpffs_dir)}: no bpffs-sync run to stop")
        return EXIT_OK
    preflight.require_directory("--bpffs", bpffs_dir)
    preflight.require_bpffs_root(bpffs_dir)
    who = rundir.holder(bpffs_dir)
    if who is None:
        print(f"no bpffs-sync run holds {printable.escape(bpffs_dir)}")
        return EXIT_OK
    if not who.verified or who.role != rundir.ROLE_RUN:
        raise EnvironmentProblem("stop", bpffs_dir, 0, f"{who.describe()} holds the lock and is not a bpffs-sync run: "
                                                       "not signalled")
    if rundir.signal_holder(bpffs_dir, who):
        deadline = time.monotonic() + args.timeout
        while (now := rundir.holder(bpffs_dir)) is not None and now.pid == who.pid:
            if time.monotonic() > deadline:
                raise EnvironmentProblem("stop", bpffs_dir, 0, f"{who.describe()} still holds the lock after "
                                                               f"{args.timeout:g} s")
            time.sleep(0.05)
    print(f"stopped {who.describe()} on {printable.escape(bpffs_dir)}")
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
    what = args.what or list(BENCHES)
    if args.count and not {"lag", "sync"} & set(what):
        raise UsageError("bench", "--count", 0, "only for lag and sync")
    if args.reads is not None and "read" not in what:
        raise UsageError("bench", "--reads", 0, "only for read")
    if (args.rate is not None or args.seconds is not None) and "sustained" not in what:
        raise UsageError("bench", "--rate/--seconds", 0, "only for sustained")

    preflight.require_root()
    preflight.require_kernel()
    preflight.require_objects([lookup("hist_oncpu")])
    if args.log_level == "info":  # the figures are the output; keep the loader's chatter out
        log.setup(args.log_format, "warning")
    doc = bench(what, counts=args.count, reads=2000 if args.reads is None else args.reads,
                rate=args.rate or 1000.0, seconds=args.seconds or 60.0)
    if args.json:
        _print_json(doc)
    else:
        print(render(doc))
    return EXIT_OK


def _prepare(args: argparse.Namespace, mount: bool = True, objects: bool = True,
             loads: bool = False) -> tuple[Any, Any]:
    """Validate the command line and the host before anything is touched; `loads`: the command loads
    the stats' programs (run, in every mode), so a kernel without their kfuncs is refused here."""
    preflight.require_root()
    preflight.require_kernel()
    programs: list[str] | None = getattr(args, "program", None)
    twice = sorted({p for p in programs or [] if (programs or []).count(p) > 1})
    if twice:
        raise UsageError("--program", ", ".join(twice), 0, "given twice")
    layout, specs = preflight.resolve(args.bpffs, args.cgroup_root, programs)
    if loads:
        preflight.require_kfuncs(specs)
    if getattr(args, "file_mode", None) is not None or getattr(args, "file_group", None) is not None:
        from dataclasses import replace

        layout = replace(layout, file_mode=layout.file_mode if args.file_mode is None else args.file_mode,
                         file_gid=layout.file_gid if args.file_group is None else args.file_group)
    if objects:
        preflight.require_objects(specs)
    if mount:
        preflight.prepare_bpffs(layout, v1=bool(getattr(args, "v1", None)))
    else:
        from bpffs_sync.mirror import bpffs

        bpffs.ensure_bpffs(layout.bpffs, mount_if_absent=False)
    preflight.require_bpffs_root(layout.bpffs)
    return layout, specs


def _add_export(sub: Any) -> None:
    """`export`: the Prometheus endpoint (bpffs_sync/export/; its arguments are checked there)."""
    from bpffs_sync.export.command import add_arguments

    p = sub.add_parser("export", help="serve Prometheus metrics: per-cgroup stats from the mirror, mirror health")
    _logging(p)
    add_arguments(p)


def _add_report(sub: Any) -> None:
    """`report`: the comparative design report (bpffs_sync/measure/report/)."""
    from bpffs_sync.measure.report.command import add_arguments

    def cmd_report(args: argparse.Namespace) -> int:
        from bpffs_sync.measure.report.command import run_command

        return run_command(args)

    p = sub.add_parser("report", help="comparative design report: every mechanism measured in one run")
    _logging(p)
    add_arguments(p)
    p.set_defaults(func=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    from bpffs_sync.export.command import version

    parser = _Parser(prog="bpffs-sync", description="Mirror cgroupfs into bpffs with per-cgroup BPF stat files.")
    parser.add_argument("--version", action="version", version=f"bpffs-sync {version()}")
    _logging(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("run", help="keep the mirror in step with cgroupfs (foreground daemon)")
    _common(p)
    p.add_argument("--resync-interval", type=bounded(float, *RESYNC_BOUNDS), metavar="S",
                   help=f"seconds between full passes, {RESYNC_BOUNDS[0]:g} .. {RESYNC_BOUNDS[1]:g} (±10%% jitter; "
                        f"default {DEFAULT_RESYNC:g})")
    p.add_argument("--no-watch", action="store_true", help="no inotify: periodic full passes only")
    p.add_argument("--once", action="store_true", help="one full pass, then exit")
    p.add_argument("--raw-tp", action="store_true", help="use the raw_tp collector even if tp_btf works")
    p.add_argument("--memory-budget", type=_size, metavar="SIZE",
                   help="memory the daemon may use, e.g. 200M (default: its memory cgroup's limit); near it, "
                        "caches that only save work are dropped")
    p.add_argument("--json", action="store_true", help="kernel backends: the links as one JSON document")
    _modes(p)
    _access(p)
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
        _modes(p)
        if name == "verify":
            _v1(p, "verify only")
            _access(p)
        p.set_defaults(func=func)

    p = sub.add_parser("stop", help="stop the `bpffs-sync run` holding this bpffs's lock (SIGTERM; the mirror "
                                    "stays, a restart adopts it)")
    _logging(p)
    _bpffs(p)
    p.add_argument("--timeout", type=bounded(float, 0.1, 3600), default=10.0, metavar="S",
                   help="seconds to wait for it to let go of the lock, 0.1 .. 3600 (default 10)")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("demo", help="make jobs/a, burn CPU in it, show its hist_oncpu, verify, clean up")
    _common(p)
    p.add_argument("--seconds", type=bounded(float, 0.1, 600), default=1.0, metavar="S",
                   help="how long the CPU burner runs, 0.1 .. 600 (default 1)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="benchmarks, each against a baseline measured in the same run")
    _logging(p)
    p.add_argument("what", nargs="*", metavar="{lag,sync,sustained,read,export,hostile}",
                   help="which benchmarks (default: all)")
    p.add_argument("--count", type=bounded(int, 1, 100_000), action="append", metavar="N",
                   help="cgroups for lag (the first) and sync (each), 1 .. 100000 (repeatable)")
    p.add_argument("--reads", type=bounded(int, 1, 1_000_000), metavar="N",
                   help="reads per file for `read`, 1 .. 1000000 (default 2000)")
    p.add_argument("--rate", type=bounded(float, 1, 100_000), metavar="N",
                   help="mkdirs per second for `sustained` (default 1000)")
    p.add_argument("--seconds", type=bounded(float, 0.1, 3600), metavar="S",
                   help="how long `sustained` runs (default 60; e.g. 2 for a quick run)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)
    _add_export(sub)
    _add_report(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Cgroup names are bytes; undecodable ones travel as surrogate escapes. What prints them escapes
    # them (printable.escape, printable.json_safe); surrogateescape only keeps a slip from crashing.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    args = build_parser().parse_args(argv)
    log.setup(args.log_format, args.log_level)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SyncError as err:
        # One line whatever the names in it hold (a path may contain a newline or an escape sequence).
        print(f"bpffs-sync: error: {printable.escape(str(err))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `bpffs-sync status --json | head`: the reader left; so do we, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as err:  # a bug: still one line, with a pointer to the full story
        if args.log_level == "debug":
            raise
        print(f"bpffs-sync: internal error: {type(err).__name__}: {printable.escape(str(err))} "
              "(rerun with --log-level debug)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
