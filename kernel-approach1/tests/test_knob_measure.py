"""The report's knob measure (bpffs_sync/measure/report/knob.py, issue 22 item 7) in the patched
guest at tiny sizes: Approach 1's bpffs knob file is linked with BPF_F_CGROUP_STAT_WRITE, the
sched_switch program's cgroup storage lookup reads the 8 bytes a write(2) to the file stored, the
file's writes are timed beside setxattr and the map update, and every who-may-write cell of the
file is what patch 13's rule says. No timed assertion: counts, values and the rule. The cgroups,
pins and link it makes are its own (knob.run removes them; the fixtures' finalizers check)."""

from __future__ import annotations

import os

import pytest

from bpffs_sync.measure.report import compiled, knob, stats


@pytest.fixture
def readloop() -> str:
    why = knob.file_support(knob.write_flag())
    if why:
        pytest.skip(why)
    return compiled.build().readloop


def test_knob_measure_with_the_file(readloop: str, cg: str, mirror_fs: str, plain_fs: str) -> None:
    out = knob.run(readloop, cg, plain_fs, n_read=200, n_write=30, rounds=2, seed=7)
    assert out["file"].startswith("linked"), out["file"]
    read = out["read"]
    assert stats.is_measured(read), read
    st = read["storage"]
    assert stats.is_measured(st), st
    assert (st["value"], st["errors"]) == (knob.VALUE, 0)  # what write(2) to the file stored
    assert read["equal"] is True and st["summary"]["n"] > 0 and read["map"]["summary"]["n"] > 0
    for key in ("xattr_set", "map_update", "file_write"):
        assert out["write"][key]["summary"]["n"] == 30, key
    who = out["who"]
    assert list(who["columns"][-2:]) == list(knob.FILE_COLUMNS)
    owner, other, in_ns = knob.SUBJECTS[1:]
    made, point = knob.FILE_COLUMNS
    want = {"root": (True, True), owner: (True, False), other: (False, False), in_ns: (True, False)}
    for subject, (child_ok, point_ok) in want.items():
        cells = who["rows"][subject]
        assert cells[made].startswith("yes" if child_ok else "no: open for writing: Permission denied"), (subject,
                                                                                                         cells[made])
        assert cells[point].startswith("yes" if point_ok else "no: open for writing: Permission denied"), (subject,
                                                                                                          cells[point])
        assert who["rule"][subject] == {made: child_ok, point: point_ok}
    assert [d for d in os.listdir(cg) if d.startswith("knob-")] == []
    assert [d for d in os.listdir(plain_fs) if d.startswith("knob-")] == []
    left = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(mirror_fs, "cgroup")) for f in fs
            if f == knob.FILE_NAME]
    assert left == []  # the link went with the measure
