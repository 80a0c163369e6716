"""`bpffs-sync knob` and the oncpu_weight knob, the parts a stock kernel can check: the arguments,
the errno of a write turned into one line, a knob refused by the user-space mirror and by a kernel
without the series' writable files, the link flags a knob's links are made with and verify's check
of them, and the walk to the file (a symlink, `..`, a missing cgroup: one line, exit 2). The guest
runs the writes themselves (kernel-approach1/tests/test_knob.py)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest
from helpers import assert_one_line_error, cli

from bpffs_sync import btf, programs, series
from bpffs_sync.backends import kernel_a1
from bpffs_sync.commands import knob
from bpffs_sync.errors import CgroupGone, KernelUnsupported, PermissionDenied, SyncError, UsageError
from bpffs_sync.libbpf import CgroupStatLinkDesc
from bpffs_sync.programs import CATALOGUE
from bpffs_sync.sandbox import mount_bpffs, umount_bpffs

WEIGHT = CATALOGUE["oncpu_weight"]
TARGET = knob.Target("/sys/fs/bpf", ("jobs", "a"), "oncpu_weight")
WRITE = 1 << 0  # BPF_F_CGROUP_STAT_WRITE as 13/15's UAPI has it; the code reads it from the kernel's BTF


@pytest.mark.unit
@pytest.mark.parametrize(("text", "parts"), [
    ("jobs/a", ("jobs", "a")), ("/jobs/a", ("jobs", "a")), ("/", ()), (".", ()), ("a//b/./c", ("a", "b", "c")),
    ("with space/ünï", ("with space", "ünï")),
])
def test_cgroup_is_named_as_proc_pid_cgroup_does(text: str, parts: tuple[str, ...]) -> None:
    assert knob.parse_cgroup(text) == parts


@pytest.mark.unit
@pytest.mark.parametrize("text", ["", "..", "a/../../etc", "/a/.."])
def test_a_cgroup_path_that_could_leave_the_mirror_is_refused(text: str) -> None:
    with pytest.raises(UsageError):
        knob.parse_cgroup(text)


@pytest.mark.unit
@pytest.mark.parametrize("text", ["", "a/b", "..", "x" * 16, "1abc", "oncpu.weight"])
def test_a_stat_name_must_be_a_program_name(text: str) -> None:
    with pytest.raises(UsageError):
        knob.parse_stat(text)


@pytest.mark.unit
def test_fields_of_a_knob_file() -> None:
    text = "cgroup_id: 63\nweight: 200\nweighted_ns: 1028450117\n"
    assert knob.parse_fields(text) == {"cgroup_id": 63, "weight": 200, "weighted_ns": 1028450117}
    assert knob.parse_fields("     usecs    : count\n") == {}  # a histogram header is no field


@pytest.mark.unit
@pytest.mark.parametrize(("code", "cls", "needle"), [
    (errno.EACCES, PermissionDenied, "owner of the parent cgroup's directory"),
    (errno.EPERM, PermissionDenied, "BPF_F_CGROUP_STAT_WRITE"),
    (errno.EINVAL, SyncError, "refused the value"),
    (errno.ERANGE, SyncError, "out of the knob's range"),
    (errno.E2BIG, SyncError, "256 bytes"),
    (errno.ENOENT, CgroupGone, "run --kernel --program oncpu_weight"),
    (errno.ELOOP, UsageError, "symlink is never followed"),
])
def test_each_errno_is_one_line_saying_what_it_means(code: int, cls: type[SyncError], needle: str) -> None:
    err = knob.explain(OSError(code, os.strerror(code)), "write", TARGET)
    assert isinstance(err, cls)
    text = str(err)
    assert "\n" not in text and needle in text and f"errno {code}" in text
    assert "/sys/fs/bpf/cgroup/jobs/a/oncpu_weight" in text


@pytest.mark.unit
def test_the_user_space_mirror_never_loads_a_knob() -> None:
    """A knob has no iterator to pin: object_path refuses it (one line), its cgroup/stat build it gives."""
    with pytest.raises(UsageError) as err:
        programs.object_path(WEIGHT)
    assert "run --kernel --program oncpu_weight" in str(err.value)
    assert not any(s.knob for s in CATALOGUE.values() if s.name != "oncpu_weight")


@pytest.mark.unit
def test_a_kernel_without_writable_files_refuses_a_knob(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(programs, "writable_files", lambda: False)
    with pytest.raises(KernelUnsupported) as err:
        programs.require_kfuncs(WEIGHT)
    assert "BPF_F_CGROUP_STAT_WRITE" in str(err.value) and "stock kernel" in str(err.value)
    programs.require_kfuncs(CATALOGUE["hist_oncpu"])  # not a knob: nothing asked
    monkeypatch.setattr(programs, "writable_files", lambda: True)
    programs.require_kfuncs(WEIGHT)


def _desc(name: str, flags: int, cgroup_id: int = 5) -> CgroupStatLinkDesc:
    return CgroupStatLinkDesc(link_id=7, prog_id=9, cgroup_id=cgroup_id, name=name, nr_files=1, nr_errors=0,
                              flags=flags)


@pytest.mark.unit
def test_only_a_knobs_links_are_writable() -> None:
    assert kernel_a1.link_flags(WEIGHT, WRITE) == WRITE
    assert [kernel_a1.link_flags(s, WRITE) for s in CATALOGUE.values() if not s.knob] == [0] * (len(CATALOGUE) - 1)


@pytest.mark.unit
def test_a_knob_needs_the_kernels_write_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """No BPF_F_CGROUP_STAT_WRITE in the kernel's BTF: a knob's link is refused in one line, other stats are not."""
    monkeypatch.setattr(series, "uapi", lambda: series.Uapi(33, 62, 16, None, None))
    with pytest.raises(KernelUnsupported) as err:
        kernel_a1.link_flags(WEIGHT)
    assert "BPF_F_CGROUP_STAT_WRITE" in str(err.value)
    assert kernel_a1.link_flags(CATALOGUE["hist_oncpu"]) == 0


@pytest.mark.unit
def test_the_write_flag_is_read_from_btf() -> None:
    found = btf.Found({"BPF_PROG_TYPE_CGROUP_STAT": 33, "BPF_CGROUP_STAT": 62, "BPF_LINK_TYPE_CGROUP_STAT": 16,
                       "OPT_CGROUP_MIRROR": 7, "BPF_F_CGROUP_STAT_WRITE": 1, "BPF_F_CGROUP_STAT_CGROUPFS": 2},
                      frozenset(), frozenset())
    uapi = series.from_btf(found).uapi
    assert uapi is not None and (uapi.write_flag, uapi.cgroupfs_flag) == (1, 2)
    older = btf.Found({k: v for k, v in found.enums.items() if k != "BPF_F_CGROUP_STAT_WRITE"}, frozenset(),
                      frozenset())
    assert series.from_btf(older).uapi.write_flag is None  # type: ignore[union-attr]


@pytest.mark.unit
def test_verify_names_a_link_with_the_wrong_flags() -> None:
    ok = [_desc("oncpu_weight", WRITE), _desc("hist_oncpu", 0), _desc("someone_elses", WRITE),
          _desc("oncpu_weight", 0, cgroup_id=0)]  # detached: makes no files
    assert kernel_a1.flag_problems(ok, WRITE) == []
    bad = kernel_a1.flag_problems([_desc("oncpu_weight", 0), _desc("hist_oncpu", WRITE)], WRITE)
    assert len(bad) == 2 and "take no writes" in bad[0] and "take writes" in bad[1]
    assert kernel_a1.flag_problems([_desc("oncpu_weight", 0)], None) == []  # no writes here: nothing to judge


# --- the CLI, on a private bpffs (root) -----------------------------------------------------------


@pytest.fixture
def fake_mirror(kernel: None) -> Iterator[str]:
    """A private bpffs with cgroup/jobs/a and a symlink cgroup/evil -> /tmp (made by hand: no kernel mirror)."""
    path = mount_bpffs()
    try:
        os.makedirs(os.path.join(path, "cgroup", "jobs", "a"))
        os.symlink("/tmp", os.path.join(path, "cgroup", "evil"))
        yield path
    finally:
        umount_bpffs(path)


@pytest.mark.parametrize(("args", "needles"), [
    (("set", "jobs/b", "oncpu_weight", "5"), ("cgroup/jobs/b", "no such cgroup in the mirror")),
    (("set", "jobs/a", "oncpu_weight", "5"), ("cgroup/jobs/a/oncpu_weight", "no link makes it")),
    (("get", "evil", "oncpu_weight"), ("cgroup/evil", "never followed")),
    (("set", "evil/tmp", "oncpu_weight", "5"), ("cgroup/evil", "never followed")),
    (("set", "jobs/../..", "oncpu_weight", "5"), ("`..`",)),
])
def test_knob_errors_are_one_line(fake_mirror: str, args: tuple[str, ...], needles: tuple[str, ...]) -> None:
    assert_one_line_error(cli("knob", *args, "--bpffs", fake_mirror), *needles)


def test_knob_refuses_a_bpffs_whose_mirror_root_others_may_write(fake_mirror: str) -> None:
    """`cgroup` at the sticky bpffs root must be root's and writable by nobody else: else planted."""
    os.chmod(os.path.join(fake_mirror, "cgroup"), 0o777)
    assert_one_line_error(cli("knob", "get", "jobs/a", "oncpu_weight", "--bpffs", fake_mirror), "writable by group")


def test_knob_refuses_a_directory_that_is_not_bpffs(tmp_path: str) -> None:
    assert_one_line_error(cli("knob", "get", "jobs/a", "oncpu_weight", "--bpffs", str(tmp_path)),
                          "not a bpf filesystem")


def test_user_space_run_refuses_a_knob_in_one_line(bpffs_mount: str, cgroup_root: str) -> None:
    """On this stock kernel the knob is refused before anything is loaded or written."""
    res = cli("run", "--once", "--user-space", "--bpffs", bpffs_mount, "--cgroup-root", cgroup_root,
              "--program", "oncpu_weight")
    assert_one_line_error(res, "oncpu_weight", "a knob")
    assert not os.path.exists(os.path.join(bpffs_mount, "bpffs-sync", "oncpu_weight"))
