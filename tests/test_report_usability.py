"""The usability table's fair rows (issue 22, item 6). Unit: a kernel series' v1 cell beside its design.
Host (the report's bed: private bpffs and cgroups, undone by its ExitStack whatever the outcome): a
pinned program run from a shell by a helper and bpftool, a pinned map through bpftool, the unprivileged
read with a deployment's pin mode (the pin's own mode back after), and the mirror's file after rmdir
with its daemon running."""

from __future__ import annotations

import os
import stat
from contextlib import ExitStack
from pathlib import Path

import pytest

from bpffs_sync.measure.report import compiled, usability
from bpffs_sync.measure.report.bed import Bed, open_bed
from bpffs_sync.measure.report.mechanisms import read_mechanisms

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("key", "check", "want"), [
    ("a1", "yes: /sys/fs/bpf/cgroup-v1/x/job/hist_oncpu made",
     f"yes: /sys/fs/bpf/cgroup-v1/x/job/hist_oncpu made (per design: {usability.V1_DESIGN['a1']})"),
    ("a2", "no: link create on a v1 cgroup: EINVAL",
     f"not built in our series: no: link create on a v1 cgroup: EINVAL (per design: {usability.V1_DESIGN['a2']})"),
    ("a1", "not measured: v1 failed in the guest", f"not measured: v1 failed in the guest (per design: "
                                                   f"{usability.V1_DESIGN['a1']})"),
    ("mirror_iter", "yes: a pin on the v1 cpu cgroup reads total_ns: 5", "yes: a pin on the v1 cpu cgroup reads "
                                                                         "total_ns: 5"),
])
def test_v1_cell(key: str, check: str, want: str) -> None:
    assert usability.v1_cell(key, check) == want


@pytest.fixture(scope="module")
def bed(request: pytest.FixtureRequest) -> Bed:
    if os.geteuid() != 0 or not (REPO / "build" / "bpf" / "hist_oncpu.bpf.o").exists():
        pytest.skip("needs root and the BPF objects (make bpf)")
    stack = ExitStack()
    request.addfinalizer(stack.close)
    return stack.enter_context(open_bed(compiled.build()))


def test_a_pinned_program_from_a_shell(bed: Bed) -> None:
    """The helper prints the same total_ns the C loop reads; bpftool's answer is recorded, whatever it is."""
    cell = usability.prog_from_shell(bed.tools.readloop, bed.progrun_pin, bed.target_id)
    assert cell.startswith("yes: a ten-line libbpf helper"), cell
    assert "`value " in cell and "`bpftool prog run`" in cell


def test_a_pinned_map_from_a_shell(bed: Bed) -> None:
    assert usability.map_from_shell(bed.map_pin, bed.target_id).startswith("yes: `bpftool map lookup"), \
        usability.map_from_shell(bed.map_pin, bed.target_id)


def test_unprivileged_read_with_the_deployed_mode(bed: Bed) -> None:
    """With bpffs's 0600 a pin is root's; with the deployment's 0660 and the readers' group uid 65534
    reads; the pin's mode and group are its own again after."""
    m = {x.key: x for x in read_mechanisms(bed)}["prog_run"]
    before = os.stat(bed.progrun_pin)
    assert stat.S_IMODE(before.st_mode) == 0o600
    assert usability.unprivileged(bed.tools.readloop, m.cloop).startswith("no:")
    cell = usability._unprivileged_row(bed, "prog_run", bed.progrun_pin, m.cloop)
    assert cell == f"yes: read as uid 65534 (pin 0660 root:{usability.READER_GID}, uid 65534 in group " \
                   f"{usability.READER_GID})"
    after = os.stat(bed.progrun_pin)
    assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid, before.st_gid)


def test_daemon_cells_share_one_daemon(bed: Bed) -> None:
    """The mirror's file after rmdir with its daemon running, then the daemon's SIGKILL."""
    gone, crash = usability.daemon_cells(bed)
    assert gone.startswith("daemon running: opening it by name gives ENOENT"), gone
    assert crash.startswith("partly: existing files still read"), crash
    assert not {"gone-mirrored", "after-crash"} & set(os.listdir(bed.layout.cgroup_root))
