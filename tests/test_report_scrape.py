"""The scrape table's measurement on this host (report/scrape.py): root, a private bpffs, real
cgroups, hist_oncpu loaded as the report's bed loads it. A scrape of 20 cgroups, flat and as chains
of depth 8: every route that runs returns one value for each of the 20, the routes that cannot run
say why, and the set leaves nothing behind."""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import Any

import pytest

from bpffs_sync.loader import cg_key
from bpffs_sync.measure import ffi
from bpffs_sync.measure.report import compiled, scrape, scrape_iter, scrape_routes
from bpffs_sync.measure.report.bed import Bed, open_bed
from bpffs_sync.programs import lookup, object_path

N = 20
VALUE = 8 * 29  # struct hist_value
# Routes that run on any kernel this project supports; files_held and iter_hist run or say why.
MUST_RUN = ("cpu_stat", "cpu_stat_held", "files", "iter_lines", "iter_ring", "prog_run", "batch")


@pytest.fixture(scope="module")
def bed(request: pytest.FixtureRequest) -> Bed:
    if os.geteuid() != 0 or not os.path.exists(object_path(lookup("hist_oncpu"))):
        pytest.skip("needs root and the BPF objects (make bpf)")
    stack = ExitStack()
    request.addfinalizer(stack.close)
    return stack.enter_context(open_bed(compiled.build(), burn_seconds=0.05))


@pytest.fixture(scope="module")
def walker(bed: Bed, request: pytest.FixtureRequest) -> scrape_iter.Walker:
    w = scrape_iter.Walker(bed)
    request.addfinalizer(w.close)
    return w


@pytest.fixture(scope="module", params=[scrape.CgSet("flat", N, 1), scrape.CgSet("depth", N, scrape.DEPTH)],
                ids=["flat", "depth"])
def result(bed: Bed, walker: scrape_iter.Walker, request: pytest.FixtureRequest) -> dict[str, Any]:
    s: scrape.CgSet = request.param
    return scrape.run_set(bed, s, walker, 2, 1)


def test_every_route_returns_one_value_per_cgroup(result: dict[str, Any]) -> None:
    """The routes that must run did, each scrape's count was 20; the hist_oncpu routes read the same
    figures as the mirror's files (idle cgroups: their values do not move)."""
    routes = result["routes"]
    assert set(routes) == set(scrape_routes.ROUTES)
    for key in MUST_RUN:
        assert "not_measured" not in routes[key], (key, routes[key])
        assert routes[key]["count"] == N and len(routes[key]["cpu_ns"]) == 2
    for key in ("iter_lines", "iter_ring", "prog_run", "batch"):
        assert routes[key]["same_as_files"] == N


def test_a_route_that_cannot_run_says_why(result: dict[str, Any]) -> None:
    """files_held runs only where a pinned iterator file can be re-read at offset 0; else its cell
    is pread's answer, checked here. iter_hist's text for 20 cgroups fits one read()."""
    held = result["routes"]["files_held"]
    assert held.get("count") == N or held["not_measured"].startswith("pread(fd, ")
    assert result["routes"]["iter_hist"]["count"] == N


def test_a_set_is_charged_mirrored_and_then_gone(bed: Bed) -> None:
    """made(): every cgroup of the set has a stats-map entry (it ran a task) and a mirror file;
    afterwards the cgroups, the files and the entries are gone."""
    with scrape.made(bed, scrape.CgSet("depth", 10, scrape.DEPTH)) as scene:
        keys = [cg_key(0, i) for i in scene.ids]
        assert len(scene.paths) == len(set(scene.ids)) == 10
        assert all(ffi.map_lookup(bed.map_fd, k, VALUE) is not None for k in keys)
        assert all(os.path.isfile(f) for f in scene.files)
    assert not os.path.exists(scene.root)
    assert not any(os.path.exists(f) for f in scene.files)
    assert all(ffi.map_lookup(bed.map_fd, k, VALUE) is None for k in keys)
