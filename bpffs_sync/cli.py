"""The `bpffs-sync` command line: the parser, the dispatch and the error boundary; no command's body.
Exit codes: 0 ok / in sync, 1 drift (verify), 2 usage or environment error (one line on stderr, never a
traceback).

Each command is one module with `main(args) -> int` (HANDLERS), which main() imports to run it: the
agent's under bpffs_sync/commands/, the lab's (bench, report) under bpffs_sync/measure/, imported only
when that command runs, so the agent never imports the lab (docs/architecture.md, "The lab")."""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from bpffs_sync import log, printable
from bpffs_sync.commands.common import EXIT_ERROR, version
from bpffs_sync.commands.run import DEFAULT_RESYNC, RESYNC_BOUNDS
from bpffs_sync.errors import SyncError

HANDLERS = {  # command -> the module whose main(args) runs it
    "run": "bpffs_sync.commands.run",
    "verify": "bpffs_sync.commands.verify",
    "status": "bpffs_sync.commands.status",
    "clean": "bpffs_sync.commands.clean",
    "stop": "bpffs_sync.commands.stop",
    "demo": "bpffs_sync.commands.demo",
    "export": "bpffs_sync.commands.export",
    "knob": "bpffs_sync.commands.knob",
    "bench": "bpffs_sync.measure.bench_command",  # the lab
    "report": "bpffs_sync.measure.report.command",  # the lab
}


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


def _add_export(sub: Any) -> None:
    """`export`: the Prometheus endpoint (bpffs_sync/export/; its arguments are checked in commands/export.py)."""
    from bpffs_sync.commands.export import DEFAULT_PORT
    from bpffs_sync.export.published import STALE_AFTER
    from bpffs_sync.export.render import DETAILS, SUMMARY

    p = sub.add_parser("export", help="serve Prometheus metrics: per-cgroup stats from the mirror, mirror health")
    _logging(p)
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


def _add_knob(sub: Any) -> None:
    """`knob set|get`: a writable stat file of the kernel's mirror (commands/knob.py checks the arguments)."""
    p = sub.add_parser("knob", help="set or read a per-cgroup knob: a kernel mirror file that takes writes "
                                    "(Approach 1; e.g. oncpu_weight)")
    ksub = p.add_subparsers(dest="knob_command", required=True, parser_class=_Parser)
    for name, text in (("set", "write VALUE to the cgroup's knob file (one write, the bytes as given)"),
                       ("get", "read the cgroup's knob file")):
        k = ksub.add_parser(name, help=text)
        _logging(k)
        k.add_argument("--bpffs", type=_path, metavar="DIR",
                       help="the bpffs holding the kernel's mirror (default /sys/fs/bpf)")
        k.add_argument("cgroup", metavar="CGROUP",
                       help="the cgroup as /proc/<pid>/cgroup names it, from the v2 root: jobs/a (/ is the root)")
        k.add_argument("stat", metavar="STAT", help="the knob's file name, e.g. oncpu_weight")
        if name == "set":
            k.add_argument("value", metavar="VALUE", help="what to write; the knob's program judges it "
                                                          "(oncpu_weight: an integer 0..1000)")
        k.add_argument("--json", action="store_true", help="one JSON document on stdout")


def _positive_boots(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= n <= 20:
        raise argparse.ArgumentTypeError(f"{n} boots: 1 to 20")
    return n


def _add_report(sub: Any) -> None:
    """`report`: the comparative design report (bpffs_sync/measure/report/)."""
    p = sub.add_parser("report", help="comparative design report: every mechanism measured in one run")
    _logging(p)
    p.add_argument("--out", default="report", metavar="DIR", help="output directory (default ./report)")
    p.add_argument("--quick", action="store_true", help="fewer samples and cgroups (about a minute; what CI runs)")
    p.add_argument("--kernel", choices=("auto", "yes", "no"), default="auto",
                   help="patched-kernel rows, from one TCG boot of the image carrying Approach 1 + 2 (else "
                        "Approach 1's): auto boots it unless --quick; yes also builds it when absent; no never "
                        "boots (default auto)")
    p.add_argument("--boots", type=_positive_boots, default=None, metavar="N",
                   help="boots of the patched image, pooled (default 3; 1 with --quick --kernel yes)")
    p.add_argument("--json", action="store_true", help="print the output paths and headline as JSON")


def build_parser() -> argparse.ArgumentParser:
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

    for name, text in (
        ("verify", "check that bpffs mirrors cgroupfs (exit 1 on drift)"),
        ("status", "daemon and kernel-object status"),
        ("clean", "remove the mirror and the pinned collectors (daemon must be stopped)"),
    ):
        p = sub.add_parser(name, help=text)
        _common(p)
        p.add_argument("--json", action="store_true", help="one JSON document on stdout")
        _modes(p)
        if name == "verify":
            _v1(p, "verify only")
            _access(p)

    p = sub.add_parser("stop", help="stop the `bpffs-sync run` holding this bpffs's lock (SIGTERM; the mirror "
                                    "stays, a restart adopts it)")
    _logging(p)
    _bpffs(p)
    p.add_argument("--timeout", type=bounded(float, 0.1, 3600), default=10.0, metavar="S",
                   help="seconds to wait for it to let go of the lock, 0.1 .. 3600 (default 10)")

    p = sub.add_parser("demo", help="make jobs/a, burn CPU in it, show its hist_oncpu, verify, clean up")
    _common(p)
    p.add_argument("--seconds", type=bounded(float, 0.1, 600), default=1.0, metavar="S",
                   help="how long the CPU burner runs, 0.1 .. 600 (default 1)")

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
    _add_export(sub)
    _add_knob(sub)
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
    try:
        handler: Callable[[argparse.Namespace], int] = importlib.import_module(HANDLERS[args.command]).main
        return handler(args)
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
