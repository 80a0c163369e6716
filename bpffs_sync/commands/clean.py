"""`bpffs-sync clean`: remove the mode's mirror and pins (the daemon must be stopped)."""

from __future__ import annotations

import argparse

from bpffs_sync import printable
from bpffs_sync.commands.common import EXIT_OK, backend, prepare, print_json, request


def main(args: argparse.Namespace) -> int:
    chosen = backend("clean", args)
    layout, specs = prepare(args, mount=False, objects=False)
    removed = chosen.clean(request(args, layout, specs))
    if args.json:
        print_json({"mode": chosen.mode, "removed": removed})
    else:
        print(f"removed {removed} entries under {printable.escape(layout.bpffs)}")
    return EXIT_OK
