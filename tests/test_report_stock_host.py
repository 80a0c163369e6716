"""The guest's every-mechanism part (inguest.stock) run on this kernel, which carries neither series:
every host mechanism through the host's own code on the report's bed, the user-space mirror as its
daemon, netlink on a named v1 hierarchy mounted for it, in interleaved rounds of a given seed, at
the trial plan's sizes. stock() undoes its bed, daemon, mounts and cgroups itself; the test checks that
its named v1 hierarchy is unmounted (the fixture runs stock() once)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bpffs_sync.measure.report import compiled, inguest, measures, stats
from bpffs_sync.measure.report.mechanisms import FULL, RAW

REPO = Path(__file__).resolve().parent.parent
SEED = 22


def _mounts() -> str:
    with open("/proc/self/mounts", encoding="ascii") as f:
        return f.read()


@pytest.fixture(scope="module")
def stock() -> dict[str, Any]:
    if os.geteuid() != 0 or not (REPO / "build" / "bpf" / "hist_oncpu.bpf.o").exists():
        pytest.skip("needs root and the BPF objects (make bpf)")
    filled: dict[str, Any] = {}
    saves: list[set[str]] = []
    got = inguest.stock(compiled.build(), inguest.GuestPlan.make("trial"), [], SEED, doc=filled,
                        saved=lambda: saves.append(set(filled)))
    assert got is filled  # filled in place: what a boot stopped midway has written is kept
    assert len(saves) == 8 and saves[0] < saves[-1]  # saved after each part, each time with more in it
    # (only our own mount point: another test run may mount the same named hierarchy meanwhile)
    mnt = os.path.dirname(got["netlink_v1_cgroup"])
    assert f" {mnt} " not in _mounts() and not os.path.exists(mnt), "the named v1 hierarchy is still mounted"
    return got


def test_every_part_is_measured(stock: dict[str, Any]) -> None:
    for part in ("netlink_check", "equal_work", "read", "breakdown", "knobs", "churn", "mkdir_readable",
                 "mkdir_cost"):
        assert stats.is_measured(stock[part]), (part, stock[part])


def test_every_read_mechanism_reads_the_busy_cgroup(stock: dict[str, Any]) -> None:
    plan = inguest.GuestPlan.make("trial")
    for key, entry in stock["read"].items():
        if key in ("cpuacct_usage", "memory_stat") and not stats.is_measured(entry):
            continue  # no v1 controller hierarchy on this host: the row says so
        assert stats.is_measured(entry), (key, entry)
        assert len(entry["c"]["samples_ns"]) == plan.stock_c and entry["c"]["rounds"] == inguest.STOCK_ROUNDS
        assert entry["c"]["value"] > 0, key  # a figure of the busy cgroup, not an empty read
    assert stock["read"]["netlink"]["c"]["value"] == 1  # the pipe reader, counted (netlink_check)


def test_equal_work_holds_and_netlink_is_explained(stock: dict[str, Any]) -> None:
    assert stock["equal_work"][FULL]["equal"] and stock["equal_work"][RAW]["equal"]
    assert stock["netlink_check"]["finding"].startswith("explained:")


def test_orders_come_from_the_seed(stock: dict[str, Any]) -> None:
    keys = [m["key"] for m in stock["mechanisms"] if m["kind"] == "read"]
    assert stock["order"]["seed"] == SEED
    assert stock["order"]["rounds"]["read"] == measures.round_orders(keys, inguest.STOCK_ROUNDS, SEED)


def test_the_mirror_ran_as_its_daemon(stock: dict[str, Any]) -> None:
    """mkdir -> readable needs the daemon (nothing else mirrors a new cgroup): its file was readable."""
    assert stock["mkdir_readable"]["mirror_iter"]["readable"] > 0
