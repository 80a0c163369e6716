"""The catalogue's types (a stat with no collector has no map, and the other way round), which
sections are sleepable, and the kfunc refusal: pure logic, the kernel's BTF stubbed."""

from __future__ import annotations

import pytest

from bpffs_sync import btf, programs
from bpffs_sync.errors import KernelUnsupported
from bpffs_sync.loader import collector_pins, sleepable
from bpffs_sync.programs import CATALOGUE, Collector, Kfuncs, StatProgram

pytestmark = pytest.mark.unit


def test_every_stat_has_a_map_iff_it_has_a_collector() -> None:
    for spec in CATALOGUE.values():
        assert (spec.stats_map is None) == (spec.collectors == ()), spec.name
    assert CATALOGUE["memcg_stat"].stats_map is None and collector_pins(CATALOGUE["memcg_stat"]) == []
    assert collector_pins(CATALOGUE["memcg_histo"]) == ["collector", "collector1"]


def test_a_map_without_a_collector_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a collector"):
        StatProgram("x", "x.bpf.o", "m", (), "d")
    with pytest.raises(ValueError, match="needs a collector"):
        StatProgram("x", "x.bpf.o", None, (Collector(("c",), None),), "d")


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("iter/cgroup", False),
        ("iter.s/cgroup", True),
        ("cgroup/stat", False),
        ("cgroup/stat.s", True),
        ("tp_btf/sched_switch", False),
        ("raw_tp/sched_switch", False),
        ("fentry.s/do_sys_open", True),
        ("lsm.s/file_open", True),
        ("kprobe/a.s/b", False),
        ("", False),
    ],
)
def test_sleepable_sections(section: str, expected: bool) -> None:
    assert sleepable(section) is expected


def test_missing_kfuncs_are_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = StatProgram("k", "k.bpf.o", None, (), "d", Kfuncs(("kf_a", "kf_b", "kf_c"), "the k kfuncs, Linux 9"))

    def stub(have: frozenset[str]) -> None:
        monkeypatch.setattr(
            btf, "vmlinux_or_none", lambda **kw: btf.Found({}, frozenset(), frozenset(), have & frozenset(kw["funcs"]))
        )

    stub(frozenset({"kf_a", "kf_b", "kf_c", "other"}))
    assert programs.missing_kfuncs(spec) == []
    programs.require_kfuncs(spec)
    stub(frozenset({"kf_a"}))
    assert programs.missing_kfuncs(spec) == ["kf_b", "kf_c"]
    with pytest.raises(KernelUnsupported) as exc:
        programs.require_kfuncs(spec)
    msg = str(exc.value)
    assert msg.startswith("stat program k: needs the k kfuncs, Linux 9; this kernel (") and "\n" not in msg
    assert msg.endswith("has no kf_b (nor 1 more)")
    monkeypatch.setattr(btf, "vmlinux_or_none", lambda **kw: None)  # no readable BTF: all missing
    assert programs.missing_kfuncs(spec) == ["kf_a", "kf_b", "kf_c"]
    assert programs.missing_kfuncs(CATALOGUE["hist_oncpu"]) == []  # needs none: never asks
