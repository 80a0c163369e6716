"""The equal-work check on this kernel (issue 22, Build 1): the report's test bed (a private bpffs, a
real cgroup with a sleeping task and a CPU burn, hist_oncpu as the mirror loads it, stat_by_id.bpf.o's
programs), every route of both variants run for a handful of reads, and the check passes. The bed is
undone by a finalizer whatever the outcome (open_bed's ExitStack: pins, programs, cgroups, bpffs)."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import pytest

from bpffs_sync.measure.report import compiled, equal, measures
from bpffs_sync.measure.report.bed import Bed, open_bed
from bpffs_sync.measure.report.mechanisms import FULL, RAW, ROUTES, Mechanism, read_mechanisms, value_of

REPO = Path(__file__).resolve().parent.parent
READS = 5  # a handful of timed reads per route and loop


@pytest.fixture(scope="module")
def bed(request: pytest.FixtureRequest) -> Bed:
    if os.geteuid() != 0 or not (REPO / "build" / "bpf" / "hist_oncpu.bpf.o").exists():
        pytest.skip("needs root and the BPF objects (make bpf)")
    stack = ExitStack()
    request.addfinalizer(stack.close)
    return stack.enter_context(open_bed(compiled.build()))


@pytest.fixture(scope="module")
def routes(bed: Bed) -> dict[str, Mechanism]:
    return {m.key: m for m in read_mechanisms(bed) if m.variant}


def test_every_route_produces_the_same_output(bed: Bed, routes: dict[str, Mechanism]) -> None:
    """Both variants, C and Python: the same bytes of text (the cgroup's own, with its histogram) and the
    same total_ns, the one the text carries."""
    got = equal.run(bed, list(routes.values()))
    full, raw = got[FULL], got[RAW]
    assert full["equal"] and raw["equal"], (full["differ"], full["cannot"], raw["differ"], raw["cannot"])
    assert full["cannot"] == {} and raw["cannot"] == {}
    assert set(full["routes"]) == set(ROUTES[FULL]) and set(raw["routes"]) == set(ROUTES[RAW])
    assert full["text"].startswith(f"cgroup_id: {bed.target_id}\ntotal_ns: ") and "distribution" in full["text"]
    assert raw["value"] == value_of(full["text"].encode()) > 0


def test_a_handful_of_reads_of_each_route(bed: Bed, routes: dict[str, Mechanism]) -> None:
    """READS timed reads of every route in both loops read that one total_ns; the breakdown of each
    names the calls the route makes (a file: open, read, close; BPF_PROG_RUN and the map: bpf only)."""
    values = set()
    for key, m in routes.items():
        assert m.cloop is not None and m.python is not None, key
        value, samples = measures.c_loop(bed.tools.readloop, m.cloop, READS)
        py_value, py_samples = measures.py_loop(m.python, READS)
        assert len(samples) == len(py_samples) == READS, key
        values |= {value, py_value}
        _, cols = measures.c_phases(bed.tools.readloop, m.cloop, READS)
        made = {p for p in measures.PHASES if any(cols[p])}
        want = {"mirror_iter": {"open", "read", "close"}, "total_file": {"open", "read", "close"},
                "iter_per_read": {"bpf", "read", "close"}, "iter_total_per_read": {"bpf", "read", "close"}}
        assert made == want.get(key, {"bpf"}), key
        assert all(t >= sum(cols[p][i] for p in measures.PHASES) for i, t in enumerate(cols["total"])), key
    assert len(values) == 1 and values.pop() > 0


def test_a_different_cgroup_is_caught(bed: Bed, routes: dict[str, Mechanism]) -> None:
    """The check is not vacuous: the map route pointed at the parent cgroup (hierarchical, so another
    total) produces other bytes, and check() names that route."""
    parent = os.stat(os.path.dirname(bed.target)).st_ino
    m = routes["map_text"]
    assert m.cloop is not None
    wrong = Mechanism(m.key, m.label, m.kind, m.what, m.python, [*m.cloop[:3], str(parent)], variant=FULL)
    outputs = equal.produce(bed, [routes["mirror_iter"], wrong])
    got = equal.check(FULL, outputs)
    assert not got["equal"] and [d.split(":")[:2] for d in got["differ"]] == [["map_text", "c"]]
