"""Per-controller cgroup-v1 knowledge, chosen from a registry (like psutil's _psplatform).

Each controller whose behaviour differs has a module with the same small interface:

    CONTROLLERS: tuple[str, ...]        the v1 controller names it covers (legacy_name, as in /proc/cgroups)
    STATS: tuple[str, ...]              stat programs a hierarchy carrying it gets by default
    kernel_figures(cgroup_dir) -> dict  the kernel's own figures for that cgroup, which the stat
                                        files must agree with (tests and `demo` compare them)

`memory` (memcg_histo) and `cpu` (cpu and cpuacct: hist_oncpu keyed by the task's cgroup in that
hierarchy) have modules; every other known controller is a row of the plain table in `table.py`
(mirrored as directories, no stat file by default). A name the registry does not know raises
UnknownController (bpffs_sync reports it as KernelUnsupported): never a silent skip.

This package imports nothing of bpffs_sync (bpffs_sync imports it): tests/test_imports.py checks.
"""

from __future__ import annotations

from typing import Protocol

from . import cpu, memory, table
from .discovery import Hierarchy, discover, hierarchy_name, parse_hierarchies

__all__ = ["Controller", "Hierarchy", "UnknownController", "controller", "default_stats", "discover",
           "hierarchy_name", "known", "parse_hierarchies"]



class Controller(Protocol):
    """What every controller module provides (mypy checks each module against it)."""

    CONTROLLERS: tuple[str, ...]
    STATS: tuple[str, ...]

    def kernel_figures(self, cgroup_dir: str) -> dict[str, int]: ...


_MODULES: tuple[Controller, ...] = (memory, cpu)
REGISTRY: dict[str, Controller] = {name: table for name in table.CONTROLLERS}
REGISTRY.update({name: mod for mod in _MODULES for name in mod.CONTROLLERS})


def known(name: str) -> bool:
    return name in REGISTRY


class UnknownController(LookupError):
    """A controller name nobody here knows (bpffs_sync turns it into KernelUnsupported, one line)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown controller (known: {', '.join(sorted(REGISTRY))})")


def controller(name: str) -> Controller:
    """The module that knows controller `name`; UnknownController for a name nobody knows."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownController(name) from None


def default_stats(controllers: tuple[str, ...]) -> tuple[str, ...]:
    """The stat programs a hierarchy carrying these controllers gets, in controller order, once each."""
    out: dict[str, None] = {}
    for name in controllers:
        for stat in controller(name).STATS:
            out[stat] = None
    return tuple(out)
