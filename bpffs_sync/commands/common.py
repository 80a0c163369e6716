"""What the commands share: exit codes, the version, the checks of the command line and the host
before anything is touched, the backend the mode names, and --json output."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from typing import Any

from bpffs_sync import preflight, printable
from bpffs_sync.errors import UsageError

EXIT_OK, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2


def version() -> str:
    """The installed distribution's version ("unknown" when run from a tree that was never installed)."""
    try:
        return metadata.version("bpffs-sync")
    except metadata.PackageNotFoundError:
        return "unknown"


def print_json(doc: Any) -> None:
    """A --json document: names that are not UTF-8 as escaped text + `<field>_b64` (printable.json_safe)."""
    json.dump(printable.json_safe(doc), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


def selection(args: argparse.Namespace) -> Any:
    """The --v1 selectors, validated (an unknown controller is KernelUnsupported), or None."""
    from bpffs_sync.mirror.forest import Selection

    if not getattr(args, "v1", None):
        return None
    chosen = Selection(args.v1)
    preflight.require_v1_paths(args.v1)
    return chosen


def _given(args: argparse.Namespace, *options: str) -> list[str]:
    return [o for o in options if getattr(args, o.lstrip("-").replace("-", "_"), None) not in (None, False, [])]


def refuse(command: str, args: argparse.Namespace, why: str, *options: str) -> None:
    """Options that make no sense together are refused, never silently ignored."""
    given = _given(args, *options)
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


def backend(command: str, args: argparse.Namespace) -> Any:
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


def request(args: argparse.Namespace, layout: Any, specs: Any, chosen: Any = None) -> Any:
    """The backend's Request: the layout, the stats, the --v1 selection (`chosen`)."""
    from bpffs_sync.backends.base import Request

    return Request(layout, specs, chosen, programs_given=bool(getattr(args, "program", None)))


def prepare(args: argparse.Namespace, mount: bool = True, objects: bool = True,
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
