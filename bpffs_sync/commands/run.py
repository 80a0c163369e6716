"""`bpffs-sync run`: keep the mirror in step with cgroupfs, through the backend the mode names."""

from __future__ import annotations

import argparse

from bpffs_sync.commands.common import backend, prepare, print_json, refuse, request, selection

RESYNC_BOUNDS = (0.1, 86400.0)  # seconds: a busy loop below, "never" above (use --no-watch/--once for that)
DEFAULT_RESYNC = 30.0


def main(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from bpffs_sync.mirror.daemon import RunOptions

    refuse("run --once", args, "not with --once (one pass, no watcher, no resync)",
           *(("--no-watch", "--resync-interval") if args.once else ()))
    chosen = backend("run", args)
    v1 = selection(args)
    layout, specs = prepare(args, objects=chosen.mode == "user-space", loads=True)
    interval = DEFAULT_RESYNC if args.resync_interval is None else args.resync_interval
    opts = RunOptions(resync_interval=interval, watch=not args.no_watch, once=args.once, force_raw_tp=args.raw_tp)
    if args.memory_budget:
        from bpffs_sync import membudget

        membudget.configure(args.memory_budget)
    result = chosen.run(replace(request(args, layout, specs, v1), run=opts))
    if args.json:
        print_json({"mode": chosen.mode, **result.doc})
    else:
        for line in result.text:
            print(line)
    return int(result.code)
