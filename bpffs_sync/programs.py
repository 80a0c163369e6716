"""The catalogue of stat programs bpffs-sync ships, and where their objects are.

A stat's file name is its reader program's name. Collectors fill `stats_map`, which the loader
pins under <bpffs>/bpffs-sync/<stat>/ so a restarted daemon adopts it with the collector link.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bpffs_sync.errors import EnvironmentProblem, UsageError


@dataclass(frozen=True, slots=True)
class Collector:
    programs: tuple[str, ...]  # attached together, pinned as collector, collector1, ...
    probe_typedef: str | None  # BTF typedef that must exist for this variant (None: always usable)


@dataclass(frozen=True, slots=True)
class StatProgram:
    name: str
    object_file: str
    stats_map: str
    collectors: tuple[Collector, ...]  # in order of preference; exactly one is loaded
    description: str


CATALOGUE: dict[str, StatProgram] = {
    "hist_oncpu": StatProgram(
        name="hist_oncpu",
        object_file="hist_oncpu.bpf.o",
        stats_map="oncpu_stats",
        collectors=(
            Collector(("oncpu_tp_btf",), "btf_trace_sched_switch"),
            Collector(("oncpu_raw_tp",), None),
        ),
        description="on-CPU time and log2 histogram of on-CPU slice lengths (usecs), hierarchical",
    ),
    "memcg_histo": StatProgram(
        name="memcg_histo",
        object_file="memcg_histo.bpf.o",
        stats_map="memcg_stats",
        collectors=(
            Collector(("memcg_begin_btf", "memcg_end_btf"), "btf_trace_mm_vmscan_memcg_reclaim_begin"),
            Collector(("memcg_begin_raw", "memcg_end_raw"), None),
        ),
        description="memcg usage/limit/failcnt from the page counters and a log2 histogram of reclaim stalls",
    ),
}
DEFAULT_PROGRAMS: tuple[str, ...] = ("hist_oncpu",)


class UnknownProgram(UsageError):
    pass


def lookup(name: str) -> StatProgram:
    try:
        return CATALOGUE[name]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise UnknownProgram("program", name, 0, f"unknown stat program (known: {known})") from None


PACKAGED_OBJECTS = Path(__file__).resolve().parent / "bpf_objects"


def object_dir() -> Path:
    """Where the BPF objects are: $BPFFS_SYNC_BPF_DIR; else the objects an installed wheel carries
    (bpffs_sync/bpf_objects, compiled CO-RE at build time by setup.py); else build/bpf next to the
    source tree (an editable install, `make bpf`)."""
    env = os.environ.get("BPFFS_SYNC_BPF_DIR")
    if env:
        return Path(env)
    if (PACKAGED_OBJECTS / CATALOGUE["hist_oncpu"].object_file).is_file():
        return PACKAGED_OBJECTS
    return Path(__file__).resolve().parent.parent / "build" / "bpf"


def object_path(spec: StatProgram, native: bool = False) -> str:
    """The stat's object: built as SEC("iter/cgroup"), or as SEC("cgroup/stat") when native."""
    name = spec.object_file.replace(".bpf.o", ".stat.bpf.o") if native else spec.object_file
    path = object_dir() / name
    if not path.is_file():
        raise EnvironmentProblem("bpf object", str(path), 0, "not built (run `make bpf`, or install the wheel)")
    return str(path)
