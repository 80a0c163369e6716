"""knob.py's pure parts (issue 22, item 5): knob_read's per-CPU slot parsed, the CPUs merged with the
equal-work check, the kfunc probe over BTF bytes, and a write check's cell."""

from __future__ import annotations

import struct

import pytest

from bpffs_sync.measure.report import knob, stats


def slot(ns: tuple[list[int], list[int], list[int]], errors: tuple[int, int, int] = (0, 0, 0),
         last: tuple[int, int, int] = (0, knob.VALUE, knob.VALUE), events: int = 0) -> bytes:
    """A struct knob_samples as the program leaves it (samples past n are garbage: ones here)."""
    head = knob._HEAD.pack(*(len(r) for r in ns), *errors, *last, events, 0)
    body = b"".join(struct.pack(f"={knob.SAMPLES}I", *(r + [1] * (knob.SAMPLES - len(r)))) for r in ns)
    return head + body


def test_slot_size_matches_the_program() -> None:
    """knob_read.bpf.c's struct knob_samples: 3 u32 n, 3 u32 errors, 3 u64 last, events, xattr_buf,
    then 3 x 4096 u32 samples."""
    assert knob.SLOT_SIZE == 12 + 12 + 24 + 8 + 8 + 3 * 4096 * 4 == 49216


def test_parse_slot_keeps_only_the_samples_taken() -> None:
    got = knob.parse_slot(slot(([40, 41], [300], [120, 110, 100]), errors=(0, 1, 0), events=3))
    assert got["events"] == 3
    assert got["clock"]["samples_ns"] == [40, 41]
    assert got["xattr"] == {"samples_ns": [300], "errors": 1, "last": knob.VALUE}
    assert got["map"]["samples_ns"] == [120, 110, 100]


def test_merge_joins_the_cpus_and_checks_equal_work() -> None:
    a = knob.parse_slot(slot(([40], [300, 310], [100]), events=2))
    b = knob.parse_slot(slot(([50], [290], [110, 130]), events=1))
    got = knob.merge_slots([a, b], knob.VALUE)
    assert got["events"] == 3
    assert sorted(got["xattr"]["samples_ns"]) == [290, 300, 310] and got["xattr"]["summary"]["n"] == 3
    assert got["map"]["value"] == knob.VALUE and got["equal"] is True


@pytest.mark.parametrize(("errors", "last"), [
    ((0, 1, 0), (0, knob.VALUE, knob.VALUE)),  # an xattr read failed once
    ((0, 0, 0), (0, knob.VALUE, 7)),  # the map held another value
])
def test_merge_flags_unequal_work(errors: tuple[int, int, int], last: tuple[int, int, int]) -> None:
    got = knob.merge_slots([knob.parse_slot(slot(([1], [2], [3]), errors=errors, last=last))], knob.VALUE)
    assert got["equal"] is False


def test_a_route_without_samples_is_not_measured() -> None:
    got = knob.merge_slots([knob.parse_slot(slot(([], [], [])))], knob.VALUE)
    assert not stats.is_measured(got["xattr"]) and got["equal"] is False


def test_kfunc_in_btf_needs_the_whole_name() -> None:
    btf = b"\0bpf_cgroup_read_xattr_other\0bpf_cgroup_from_id\0"
    assert not knob.kfunc_in_btf("bpf_cgroup_read_xattr", btf)
    assert knob.kfunc_in_btf("bpf_cgroup_from_id", btf)


@pytest.mark.parametrize(("rc", "err", "want"), [
    (0, "", "yes: wrote"),
    (1, "readloop: setxattr: Permission denied\n", "no: setxattr: Permission denied"),
    (1, "", "no: exit 1"),
])
def test_check_cell(rc: int, err: str, want: str) -> None:
    assert knob.check_cell(rc, err, "wrote") == want


def test_check_cell_names_the_pin() -> None:
    assert knob.check_cell(1, "readloop: /sys/fs/bpf/x/knobs: Permission denied\n", "wrote", "/sys/fs/bpf/x/knobs") \
        == "no: the pin: Permission denied"
