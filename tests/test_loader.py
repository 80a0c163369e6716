"""The libbpf binding and the stat loader, against the real kernel."""

from __future__ import annotations

import json
import os

import pytest
from helpers import Mirror, wait_for

from bpffs_sync import libbpf
from bpffs_sync.commands.demo import burn_in
from bpffs_sync.errors import LibbpfError
from bpffs_sync.histogram import parse_stat
from bpffs_sync.loader import LoadedStat
from bpffs_sync.programs import lookup, missing_kfuncs


def test_error_names_operation_path_and_strerror(kernel: None) -> None:
    """A libbpf failure says which call, on what, and why."""
    with pytest.raises(LibbpfError) as exc:
        libbpf.BpfObject("/nonexistent/x.bpf.o")
    msg = str(exc.value)
    assert "bpf_object__open_file /nonexistent/x.bpf.o" in msg
    assert "No such file or directory" in msg
    assert exc.value.errno == 2


def test_obj_get_of_missing_pin(bpffs_mount: str) -> None:
    """bpf_obj_get on nothing: ENOENT with the path."""
    with pytest.raises(LibbpfError) as exc:
        libbpf.obj_get(os.path.join(bpffs_mount, "nothing"))
    assert exc.value.errno == 2 and "bpf_obj_get" in str(exc.value)


def test_load_pins_map_and_collector_then_adopts(mirror: Mirror) -> None:
    """First load pins map + collector; a second load adopts both (same map id, no new collector)."""
    spec = lookup("hist_oncpu")
    first = LoadedStat(mirror.layout, spec)
    try:
        assert first.collector_adopted is False
        assert os.path.exists(mirror.layout.private_path("hist_oncpu", "oncpu_stats"))
        assert os.path.exists(mirror.layout.private_path("hist_oncpu", "collector"))
    finally:
        first.close()
    second = LoadedStat(mirror.layout, spec)
    try:
        assert second.collector_adopted is True
        assert second.map_id == first.map_id
    finally:
        second.close()


def test_pin_serves_the_cgroup(mirror: Mirror) -> None:
    """A per-cgroup pin is a SELF_ONLY cgroup iterator whose link info names the cgroup."""
    os.mkdir(mirror.cg("p"))
    loaded = LoadedStat(mirror.layout, lookup("hist_oncpu"))
    try:
        pin = os.path.join(mirror.bpffs, "p_hist")
        cg_fd = os.open(mirror.cg("p"), os.O_RDONLY | os.O_DIRECTORY)
        dir_fd = os.open(mirror.bpffs, os.O_RDONLY | os.O_DIRECTORY)
        try:
            cgid = loaded.pin_cgroup(cg_fd, dir_fd, "p_hist", pin)
        finally:
            os.close(cg_fd)
            os.close(dir_fd)
        fd = libbpf.obj_get(pin)
        try:
            info = libbpf.link_info(fd, pin)
        finally:
            os.close(fd)
        assert info.link_type == libbpf.BPF_LINK_TYPE_ITER
        assert info.order == libbpf.BPF_CGROUP_ITER_SELF_ONLY
        assert info.cgroup_id == cgid == os.stat(mirror.cg("p")).st_ino
        os.unlink(pin)
    finally:
        loaded.close()


def test_raw_tp_fallback_collects(mirror: Mirror) -> None:
    """The raw_tp collector (the fallback where tp_btf is missing) loads and counts."""
    os.makedirs(mirror.cg("raw/a"))
    mirror.start("--raw-tp")
    assert mirror.status()["daemon"]["collectors"] == {"hist_oncpu": "oncpu_raw_tp"}  # type: ignore[index]
    wait_for(lambda: os.path.exists(mirror.stat_path("raw/a")), 10, "mirrored")
    cpu = burn_in(mirror.cg("raw/a"), 0.3)
    with open(mirror.stat_path("raw/a"), encoding="utf-8") as f:
        total = parse_stat(f.read()).summary["total_ns"] / 1e9
    assert abs(total - cpu) / cpu < 0.10


def test_stale_generation_pins_are_replaced(mirror: Mirror) -> None:
    """If the stats map is replaced (new generation), old pins are judged wrong_program and re-pinned."""
    os.mkdir(mirror.cg("g"))
    mirror.cli("run", "--once", check=True)
    # Simulate an incompatible upgrade: drop the pinned map and collector; the next run makes new ones.
    os.unlink(mirror.layout.private_path("hist_oncpu", "oncpu_stats"))
    os.unlink(mirror.layout.private_path("hist_oncpu", "collector"))
    res = mirror.cli("run", "--once", "--log-format", "json", check=True)
    passes = [doc for doc in map(json.loads, res.stderr.splitlines()) if doc["event"] == "reconcile_pass"]
    assert [p["done"] for p in passes] == [{"remove": 2, "pin": 2}]  # root and g, re-pinned
    assert mirror.in_sync()


def test_a_stat_without_collector_pins_nothing_private(mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    """memcg_stat (no collector, no map, a sleepable iter.s/cgroup reader): loaded with
    BPF_F_SLEEPABLE, nothing in its private directory (not the directory either), nothing to heal
    or forget, no collector problem; its pin serves the cgroup. On a kernel without the memcg
    kfuncs (the load is let through here: the weak kfuncs are dead code) the file says so."""
    from bpffs_sync import loader
    from bpffs_sync.backends.user_space import verify

    spec = lookup("memcg_stat")
    missing = missing_kfuncs(spec)
    monkeypatch.setattr(loader, "require_kfuncs", lambda spec: None)
    flags: dict[str, int] = {}
    real_set_flags = libbpf.BpfProgram.set_flags

    def spy(self: libbpf.BpfProgram, value: int) -> None:
        flags[self.name] = value
        real_set_flags(self, value)

    monkeypatch.setattr(libbpf.BpfProgram, "set_flags", spy)
    os.mkdir(mirror.cg("m"))
    loaded = LoadedStat(mirror.layout, spec)
    try:
        assert flags == {"memcg_stat": libbpf.BPF_F_SLEEPABLE}
        assert (loaded.collector, loaded.map_fd, loaded.map_id, loaded.collector_name) == (None, None, None, "")
        assert not os.path.exists(mirror.layout.private_path("memcg_stat"))
        assert loaded.heal() is False and loaded.forget_cgroup(0, 1) is False
        assert loaded.forget_hierarchies_except(frozenset()) == 0
        assert not os.path.exists(mirror.layout.private_path("memcg_stat"))
        assert verify(mirror.layout, [spec]).collector_problems == []
        pin = os.path.join(mirror.bpffs, "m_memcg")
        cg_fd = os.open(mirror.cg("m"), os.O_RDONLY | os.O_DIRECTORY)
        dir_fd = os.open(mirror.bpffs, os.O_RDONLY | os.O_DIRECTORY)
        try:
            loaded.pin_cgroup(cg_fd, dir_fd, "m_memcg", pin)
        finally:
            os.close(cg_fd)
            os.close(dir_fd)
        try:
            with open(pin, encoding="ascii") as f:
                text = f.read()
        finally:
            os.unlink(pin)
        if missing:
            assert text == "memcg_stat: this kernel has no memcg kfuncs\n"
        elif text:  # the memory controller is on for this cgroup
            assert text.startswith("anon ") and "\npgfault " in text
    finally:
        loaded.close()
    flags.clear()
    other = LoadedStat(mirror.layout, lookup("hist_oncpu"))  # iter/cgroup: not sleepable, flags untouched
    other.close()
    assert flags == {}
