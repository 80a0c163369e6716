"""`bpffs-sync verify`: does bpffs mirror cgroupfs? Exit 0 in sync, 1 on drift."""

from __future__ import annotations

import argparse
from typing import Any

from bpffs_sync.commands.common import EXIT_DRIFT, EXIT_OK, backend, prepare, print_json, request, selection


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


def main(args: argparse.Namespace) -> int:
    chosen = backend("verify", args)
    v1 = selection(args)
    layout, specs = prepare(args, mount=False, objects=False)
    if chosen.mode == "user-space":
        layout = _with_daemon_access(args, layout)
    report = chosen.verify(request(args, layout, specs, v1))
    if args.json:
        print_json(report.to_json())
    else:
        print(report.to_text())  # names escaped where the text is composed (printable.escape)
    return EXIT_OK if report.in_sync else EXIT_DRIFT
