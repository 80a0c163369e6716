"""`bpffs-sync bench [WHAT...]`: the benchmarks' command (measure/bench.py runs them). Its options are
defined in cli.py, which imports this module only when `bench` runs (the agent never imports the lab)."""

from __future__ import annotations

import argparse

from bpffs_sync import log, preflight
from bpffs_sync.commands.common import EXIT_OK, print_json
from bpffs_sync.errors import UsageError
from bpffs_sync.programs import lookup

BENCHES = ("lag", "sync", "sustained", "read", "export", "hostile")


def main(args: argparse.Namespace) -> int:
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
        print_json(doc)
    else:
        print(render(doc))
    return EXIT_OK
