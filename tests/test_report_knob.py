"""The knob measure on this kernel (issue 22, items 5 and 7) with tiny sizes, on real cgroups under a
private v2 subtree and a private bpffs (the conftest fixtures, removed by their finalizers): the
BPF-side read of every route in sched_switch, the writes, and every who-may-write cell; nothing it
made is left. On a kernel without Approach 1's file writes (the host) the file's cells must say
"not in this kernel"; with them (the guest), each file cell must be what patch 13's rule says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bpffs_sync.measure.report import compiled, knob, stats

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def tools(kernel: None) -> compiled.Tools:
    if not (REPO / "build" / "bpf" / "vmlinux.h").exists() and not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("needs BTF")
    return compiled.build()


def test_knob_measure_on_real_cgroups(tools: compiled.Tools, cgroup_root: str, bpffs_mount: str) -> None:
    out = knob.run(tools.readloop, cgroup_root, bpffs_mount, n_read=200, n_write=30, rounds=2, seed=7)
    read = out["read"]
    with open("/sys/kernel/btf/vmlinux", "rb") as f:
        has_kfunc = knob.kfunc_in_btf(knob.KFUNC, f.read())
    no_file = knob.file_support(knob.write_flag())
    routes = [r for r in knob.ROUTES if (r != "storage" or not no_file) and (r != "xattr" or has_kfunc)]
    assert stats.is_measured(read), read
    assert read["equal"], {r: (read[r]["errors"], read[r]["value"]) for r in routes if r != "clock"}
    for route in routes:
        assert read[route]["summary"]["n"] > 0
        assert all(0 < s < 10**9 for s in read[route]["samples_ns"])
    if not has_kfunc:  # the other routes are measured without it (knob_switch_nox)
        assert "no bpf_cgroup_read_xattr" in read["xattr"]["not_measured"]
    writes = ["xattr_set", "map_update", *([] if no_file else ["file_write"])]
    for key in writes:
        assert out["write"][key]["summary"]["n"] == 30
    rows = out["who"]["rows"]
    xattr, closed, group, *files = out["who"]["columns"]
    assert tuple(files) == knob.FILE_COLUMNS
    if no_file:  # a stock kernel: the file's cells say so, computed from its BTF
        assert out["write"]["file_write"] == {"not_measured": no_file}
        assert has_kfunc is False or read["storage"] == {"not_measured": no_file}
        assert {rows[s][c] for s in knob.SUBJECTS for c in files} == {"not in this kernel"}
    else:  # every file cell is what patch 13's rule says
        for s in knob.SUBJECTS:
            for c in files:
                assert rows[s][c].startswith("yes" if out["who"]["rule"][s][c] else "no: open for writing"), \
                    (s, c, rows[s][c])
    rows = {s: {c: v for c, v in cells.items() if c not in files} for s, cells in rows.items()}
    assert rows["root"] == dict.fromkeys([xattr, closed, group], "yes: wrote")
    owner, other, in_ns = knob.SUBJECTS[1:]
    assert rows[owner][xattr].startswith("yes") and rows[other][xattr].startswith("no")
    assert rows[owner][closed].startswith("no") and rows[owner][group].startswith("yes")
    assert rows[other][group].startswith("no")
    assert rows[in_ns][xattr] == "yes: wrote (its /proc/self/cgroup: 0::/)"
    assert [d for d in os.listdir(cgroup_root) if d.startswith("knob-")] == []
    assert [d for d in os.listdir(bpffs_mount) if d.startswith("knob-")] == []
