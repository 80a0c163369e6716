"""knob.py's pure parts (issue 22, item 5): knob_read's per-CPU slot parsed, the CPUs merged with the
equal-work check, the kfunc probe over BTF bytes, and a write check's cell."""

from __future__ import annotations

import struct

import pytest

from bpffs_sync.measure.report import knob, stats

Ns = tuple[list[int], list[int], list[int], list[int]]
Four = tuple[int, int, int, int]


def slot(ns: Ns, errors: Four = (0, 0, 0, 0), last: Four = (0, knob.VALUE, knob.VALUE, knob.VALUE),
         events: int = 0) -> bytes:
    """A struct knob_samples as the program leaves it (samples past n are garbage: ones here)."""
    head = knob._HEAD.pack(*(len(r) for r in ns), *errors, *last, events, 0)
    body = b"".join(struct.pack(f"={knob.SAMPLES}I", *(r + [1] * (knob.SAMPLES - len(r)))) for r in ns)
    return head + body


def test_slot_size_matches_the_program() -> None:
    """knob_read.bpf.c's struct knob_samples: 4 u32 n, 4 u32 errors, 4 u64 last, events, xattr_buf,
    then 4 x 4096 u32 samples (routes clock, xattr, map, storage)."""
    assert knob.SLOT_SIZE == 16 + 16 + 32 + 8 + 8 + 4 * 4096 * 4 == 65616


def test_parse_slot_keeps_only_the_samples_taken() -> None:
    got = knob.parse_slot(slot(([40, 41], [300], [120, 110, 100], [90]), errors=(0, 1, 0, 2), events=3))
    assert got["events"] == 3
    assert got["clock"]["samples_ns"] == [40, 41]
    assert got["xattr"] == {"samples_ns": [300], "errors": 1, "last": knob.VALUE}
    assert got["map"]["samples_ns"] == [120, 110, 100]
    assert got["storage"] == {"samples_ns": [90], "errors": 2, "last": knob.VALUE}


def test_merge_joins_the_cpus_and_checks_equal_work() -> None:
    a = knob.parse_slot(slot(([40], [300, 310], [100], [95]), events=2))
    b = knob.parse_slot(slot(([50], [290], [110, 130], [80, 85]), events=1))
    got = knob.merge_slots([a, b], knob.VALUE)
    assert got["events"] == 3
    assert sorted(got["xattr"]["samples_ns"]) == [290, 300, 310] and got["xattr"]["summary"]["n"] == 3
    assert got["storage"]["summary"]["n"] == 3 and got["storage"]["value"] == knob.VALUE
    assert got["map"]["value"] == knob.VALUE and got["equal"] is True


@pytest.mark.parametrize(("errors", "last"), [
    ((0, 1, 0, 0), (0, knob.VALUE, knob.VALUE, knob.VALUE)),  # an xattr read failed once
    ((0, 0, 0, 0), (0, knob.VALUE, 7, knob.VALUE)),  # the map held another value
    ((0, 0, 0, 1), (0, knob.VALUE, knob.VALUE, knob.VALUE)),  # the cgroup storage had no entry once
    ((0, 0, 0, 0), (0, knob.VALUE, knob.VALUE, 0)),  # the file's write did not reach the storage
])
def test_merge_flags_unequal_work(errors: Four, last: Four) -> None:
    got = knob.merge_slots([knob.parse_slot(slot(([1], [2], [3], [4]), errors=errors, last=last))], knob.VALUE)
    assert got["equal"] is False


def test_a_route_without_samples_is_not_measured() -> None:
    got = knob.merge_slots([knob.parse_slot(slot(([], [], [], [])))], knob.VALUE)
    assert not stats.is_measured(got["xattr"]) and got["equal"] is False


def test_without_the_file_the_storage_route_says_why_and_is_not_in_the_check() -> None:
    """A kernel without file writes: the storage route is not taken (no samples, its last value 0),
    its entry is the reason, and the xattr and map routes alone make the equal-work check."""
    why = knob.file_support(None)
    got = knob.merge_slots([knob.parse_slot(slot(([1], [2], [3], []), last=(0, knob.VALUE, knob.VALUE, 0)))],
                           knob.VALUE, {"storage": why})
    assert got["storage"] == {"not_measured": why} and why.startswith("not in this kernel: ")
    assert got["equal"] is True


def test_file_support_follows_the_kernels_flag() -> None:
    assert knob.file_support(1 << 0) == ""
    assert knob.file_support(None).startswith("not in this kernel: its BTF has no BPF_F_CGROUP_STAT_WRITE")


@pytest.mark.parametrize(("subject", "point", "want"), [
    ("root", False, True), ("root", True, True),
    (knob.SUBJECTS[1], False, True), (knob.SUBJECTS[1], True, False),  # the owner: below the point, not the point
    (knob.SUBJECTS[2], False, False), (knob.SUBJECTS[2], True, False),
    (knob.SUBJECTS[3], False, True), (knob.SUBJECTS[3], True, False),  # a cgroup namespace changes nothing
])
def test_may_write_file_is_patch_13s_rule(subject: str, point: bool, want: bool) -> None:
    assert knob.may_write_file(subject, point) is want


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
