"""The kernel benches' harness (bpffs_sync/measure/harness.py) on this host's cgroup v2: the tree
builder, the slab reader, the busy CPU and each runner of the stall probe, and the three benches
that use it (kernel-approach1's bench_kernel_mirror, kernel-approach2's bench_a2, the report's
inguest) importing and running their tree/stall pieces, with small n. The benches themselves run in
a guest kernel carrying the series; here only what needs no series runs. Every cgroup made is
below a private root that the cgroup_root fixture removes, pass or fail."""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from types import ModuleType

import pytest

from bpffs_sync.measure import harness

REPO = Path(__file__).resolve().parent.parent


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cgroups_below(root: str) -> list[str]:
    return sorted(os.path.relpath(d, root) for d, _, _ in os.walk(root) if d != root)


def test_make_tree_parents_first_and_remove_tree(cgroup_root: str) -> None:
    made = harness.make_tree(cgroup_root, 7)
    assert [os.path.relpath(p, cgroup_root) for p in made] == [
        "p0.slice", "p0.slice/c0.scope", "p0.slice/c1.scope", "p1.slice", "p1.slice/c0.scope", "p1.slice/c1.scope",
        "p2.slice"]
    assert _cgroups_below(cgroup_root) == sorted(os.path.relpath(p, cgroup_root) for p in made)
    assert harness.remove_tree(made) >= 0.0
    assert _cgroups_below(cgroup_root) == []
    made, took = harness.timed_make(cgroup_root, 1)
    assert len(made) == 1 and took >= 0.0
    harness.remove_tree(made)


def test_slab_and_spin() -> None:
    assert harness.slab_bytes() > 0 and harness.slab_bytes() % 1024 == 0
    start = time.monotonic()
    harness.spin(0.05)
    assert time.monotonic() - start >= 0.05


def _check_samples(samples: list[harness.Sample], top: str) -> None:
    assert samples, "the probe ran no mkdir"
    assert all(s.latency_ns > 0 for s in samples)
    assert not os.path.exists(os.path.join(top, harness.PROBE_NAME))
    seen = harness.Summary.of(samples)
    assert seen.count == len(samples) and seen.worst_ns == max(s.latency_ns for s in samples)
    assert seen.slept == sum(s.slept for s in samples) and seen.slept_worst_ns <= seen.worst_ns


def test_stall_probe_thread(cgroup_root: str) -> None:
    with harness.stall_probe(cgroup_root, "thread", pair=False, cpu=None) as samples:
        time.sleep(0.05)
    _check_samples(samples, cgroup_root)


def test_stall_probe_process_warms_up_first(cgroup_root: str) -> None:
    with harness.stall_probe(cgroup_root, "process", pair=True, warmup=20) as samples:
        assert samples == []  # filled on exit
        time.sleep(0.05)
    _check_samples(samples, cgroup_root)
    window = (samples[0].start_ns, samples[-1].start_ns + samples[-1].latency_ns)
    assert harness.overlapping(samples, window) == [s.latency_ns for s in samples]
    assert harness.overlapping(samples, (0, samples[0].start_ns)) == []


def test_stall_probe_readloop(cgroup_root: str) -> None:
    try:
        from bpffs_sync.measure import toolchain

        readloop = toolchain.compile_c("readloop", "report")
    except Exception as err:  # no compiler or libbpf headers here
        pytest.skip(f"readloop not built: {err}")
    with harness.stall_probe(cgroup_root, "readloop", readloop=readloop, cpu=0) as samples:
        t0 = time.monotonic_ns()
        time.sleep(0.05)
        window = (t0, time.monotonic_ns())
    _check_samples(samples, cgroup_root)
    assert harness.overlapping(samples, window)  # the same clock as time.monotonic_ns
    # the report's host rows: a settle time instead of waiting for the probe, in a directory of its own
    from bpffs_sync.measure.report.measures import mkdir_prober

    own = os.path.join(cgroup_root, "probe-dir")
    with mkdir_prober(readloop, own) as latencies:
        time.sleep(0.05)
    assert latencies() and all(lat > 0 for lat in latencies()) and not os.path.exists(own)


def test_bench_kernel_mirror_probe(cgroup_root: str) -> None:
    """kernel-approach1's stall probe (a thread timing mkdir alone) during an action and idle."""
    a1 = _load(REPO / "kernel-approach1" / "bench" / "bench_kernel_mirror.py", "bench_kernel_mirror")
    made = a1.make_tree(cgroup_root, 3)
    probe = a1.probe_while(cgroup_root, lambda: time.sleep(0.02))
    assert probe.samples and probe.worst == max(probe.samples) and len(probe.slept) <= len(probe.samples)
    a1.remove_tree(made)
    assert _cgroups_below(cgroup_root) == []


def test_bench_a2_probe_and_slab(cgroup_root: str) -> None:
    """kernel-approach2's probe_worst (a process timing mkdir+rmdir, 20 warm-up pairs) idle and during
    an action, and its tree and slab pieces."""
    a2 = _load(REPO / "kernel-approach2" / "bench" / "bench_a2.py", "bench_a2")
    sub = os.path.join(cgroup_root, "sub")
    os.mkdir(sub)
    ran: list[int] = []

    def during() -> None:  # a tree made and removed in another subtree while the probe runs
        made = a2.make_tree(sub, 5)
        ran.append(len(made))
        time.sleep(0.05)  # the probe's pairs after its warm-up are the ones during this
        a2.remove_tree(made)

    worst, pairs, slept, slept_worst = a2.probe_worst(cgroup_root, during)
    assert ran == [5] and worst > 0 and pairs > 0 and 0 <= slept <= pairs and slept_worst <= worst
    os.rmdir(sub)
    worst, pairs, _, _ = a2.probe_worst(cgroup_root, None)
    assert worst > 0 and pairs > 0
    made = a2.make_tree(cgroup_root, 4)
    assert a2.slab_bytes() > 0
    a2.remove_tree(made)
    assert _cgroups_below(cgroup_root) == []


def test_inguest_uses_the_harness() -> None:
    """The report's guest side imports (its stall runs harness.stall_probe's readloop runner)."""
    from bpffs_sync.measure.report import inguest

    assert vars(inguest)["harness"] is harness and inguest.TRIES == 5


@pytest.mark.parametrize("how", ["thread", "process"])
def test_stall_probe_stops_when_the_body_fails(cgroup_root: str, how: str) -> None:
    with pytest.raises(RuntimeError, match="the action failed"), \
            harness.stall_probe(cgroup_root, how, pair=True, warmup=1):  # type: ignore[arg-type]
        raise RuntimeError("the action failed")
    assert not os.path.exists(os.path.join(cgroup_root, harness.PROBE_NAME))
