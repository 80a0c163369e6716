"""The memory budget (membudget.py): the daemon's own memory cgroup is found and read, and near its
limit the caches that only save work are dropped (one `memory_pressure` line each way) while the
mirror stays in sync."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import Mirror, assert_one_line_error, cli, wait_for

from bpffs_sync import membudget
from bpffs_sync.mountinfo import parse

MOUNTS = parse(
    "30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n"
    "35 25 0:31 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n"
    "36 25 0:32 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu\n"
)


def _proc(tmp_path: Path, text: str) -> str:
    path = tmp_path / "cgroup"
    path.write_text(text)
    return str(path)


def test_files_v1_memory_controller(tmp_path: Path) -> None:
    """With the memory controller on v1, usage and limit are that hierarchy's files."""
    where = membudget.files(_proc(tmp_path, "4:memory:/jobs/a\n3:cpu:/\n0::/x\n"), MOUNTS)
    assert where == membudget.Files("/sys/fs/cgroup/memory/jobs/a/memory.usage_in_bytes",
                                    "/sys/fs/cgroup/memory/jobs/a/memory.limit_in_bytes")


def test_files_v2_needs_memory_max(tmp_path: Path) -> None:
    """On v2 only: memory.current/memory.max of the process's cgroup, if the controller is enabled."""
    mounts = parse(f"30 25 0:26 / {tmp_path} rw - cgroup2 cgroup2 rw\n")
    proc = _proc(tmp_path, "0::/jobs\n")
    (tmp_path / "jobs").mkdir()
    assert membudget.files(proc, mounts) is None  # no memory controller there
    (tmp_path / "jobs" / "memory.max").write_text("max\n")
    assert membudget.files(proc, mounts) == membudget.Files(f"{tmp_path}/jobs/memory.current",
                                                            f"{tmp_path}/jobs/memory.max")


def test_pressure_has_hysteresis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tight above 80 % of the limit, and until usage is below 60 % again; no limit, never tight."""
    monkeypatch.setattr(membudget, "CHECK_EVERY", 0.0)
    usage, limit = tmp_path / "usage", tmp_path / "limit"
    budget = membudget.Budget(membudget.Files(str(usage), str(limit)))
    limit.write_text("1000\n")
    for used, tight in ((500, False), (850, True), (700, True), (590, False), (700, False)):
        usage.write_text(f"{used}\n")
        assert budget.pressure() is tight, used
    limit.write_text("max\n")
    usage.write_text("999999\n")
    assert budget.pressure() is False


def test_own_budget_with_and_without_a_cgroup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--memory-budget: the smaller of it and the cgroup's limit; with no memory cgroup, against RSS."""
    monkeypatch.setattr(membudget, "CHECK_EVERY", 0.0)
    usage, limit = tmp_path / "usage", tmp_path / "limit"
    usage.write_text("850\n")
    limit.write_text("max\n")
    assert membudget.Budget(membudget.Files(str(usage), str(limit)), 1000).pressure() is True
    limit.write_text("100000\n")
    assert membudget.Budget(membudget.Files(str(usage), str(limit)), 1000).pressure() is True
    assert membudget.Budget(membudget.Files(str(usage), str(limit)), 0).pressure() is False
    assert membudget.Budget(None, 16 << 20).pressure() is True  # this test process's RSS is well above 13 MiB
    assert membudget.Budget(None, 1 << 40).pressure() is False
    assert membudget.Budget(None, 0).pressure() is False


@pytest.mark.parametrize(("value", "why"), [("12X", "not a size"), ("1M", "out of range"), ("", "not a size"),
                                             ("2T", "not a size")])
def test_memory_budget_values_are_checked(value: str, why: str) -> None:
    """A bad --memory-budget is one usage line, exit 2."""
    assert_one_line_error(cli("run", "--memory-budget", value), "--memory-budget", why)


def test_daemon_with_a_memory_budget_below_its_usage(mirror: Mirror) -> None:
    """`run --memory-budget 16M` (less than the daemon needs): it says so once and still mirrors."""
    os.mkdir(mirror.cg("a"))
    mirror.start("--memory-budget", "16M")
    os.mkdir(mirror.cg("b"))
    wait_for(lambda: os.path.exists(mirror.stat_path("b")), 30, "b mirrored")
    wait_for(lambda: '"memory_pressure"' in mirror.log(), 30, "memory_pressure logged")
    docs = [json.loads(line) for line in mirror.log().splitlines() if '"memory_pressure"' in line]
    assert len(docs) == 1 and docs[0]["tight"] is True and docs[0]["limit"] == 16 << 20, docs
    assert mirror.in_sync()


def test_daemon_sheds_caches_near_its_memory_limit(mirror: Mirror, v1_memory: str) -> None:
    """The daemon in a v1 memory cgroup whose limit is lowered to ~1.2x its usage: it says so once,
    keeps mirroring, and says so again when the limit is lifted."""
    for i in range(50):
        os.mkdir(mirror.cg(f"a{i}"))

    def enter() -> None:
        with open(os.path.join(v1_memory, "cgroup.procs"), "w", encoding="ascii") as f:
            f.write(str(os.getpid()))

    mirror.start(preexec=enter, resync_interval=0.5)
    assert mirror.proc is not None
    usage = int(Path(v1_memory, "memory.usage_in_bytes").read_text())
    Path(v1_memory, "memory.limit_in_bytes").write_text(str(int(usage * 1.2)))

    def events(tight: bool) -> list[dict[str, object]]:
        docs = [json.loads(line) for line in mirror.log().splitlines() if '"memory_pressure"' in line]
        return [d for d in docs if d["tight"] is tight]

    for i in range(20):  # new pins to judge, so the budget is asked
        os.mkdir(mirror.cg(f"b{i}"))
    wait_for(lambda: bool(events(True)) or mirror.proc is None or mirror.proc.poll() is not None, 30,
             "memory_pressure (tight)")
    assert mirror.proc.poll() is None, mirror.log()[-2000:]
    wait_for(mirror.in_sync, 60, "in sync under pressure")
    Path(v1_memory, "memory.limit_in_bytes").write_text("-1")
    os.mkdir(mirror.cg("c"))
    wait_for(lambda: bool(events(False)), 30, "memory_pressure (relieved)")
    assert len(events(True)) == 1, mirror.log()[-2000:]
    assert mirror.proc.poll() is None
