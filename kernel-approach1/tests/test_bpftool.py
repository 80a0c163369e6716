"""bpftool of the series' tree (its patch "bpftool: Support cgroup stat links") against the running
patched kernel: `link show` prints a cgroup stat link's fields, plain and JSON, equal to what the
project's own bpf_link_info reader says; `prog show` and `feature probe` know the program type.

The binary comes from BPFFS_SYNC_BPFTOOL (kernel-approach1/scripts/bpftool.sh TREE builds it and
prints its path). Run inside the guest by `make kernel-test`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import pytest
from conftest import link_desc

from bpffs_sync import libbpf
from bpffs_sync.backends import kernel_a1

BPFTOOL = os.environ.get("BPFFS_SYNC_BPFTOOL", "")
NAME = "hist_oncpu"  # the program's name, the file name of a link made without one


@pytest.fixture(scope="module")
def bpftool() -> str:
    if not BPFTOOL:
        pytest.skip("no bpftool: BPFFS_SYNC_BPFTOOL unset (kernel-approach1/scripts/bpftool.sh TREE builds it)")
    if not os.access(BPFTOOL, os.X_OK):
        pytest.fail(f"BPFFS_SYNC_BPFTOOL={BPFTOOL} is not an executable file")
    return BPFTOOL


def run(bpftool: str, *args: str) -> str:
    """bpftool's stdout. The exit status is not checked: `link show id N` returns errno's leftover
    from an earlier call (upstream's do_show(): `errno == ENOENT ? 0 : -1`), 255 on a link it has
    printed. A failure says "Error:" on stderr (plain) or {"error": ...} on stdout (--json)."""
    res = subprocess.run([bpftool, *args], capture_output=True, encoding="utf-8", check=False, timeout=900)
    assert "Error:" not in res.stderr, res.stderr
    return res.stdout


def run_json(bpftool: str, *args: str) -> Any:
    out = json.loads(run(bpftool, "--json", *args))
    assert not (isinstance(out, dict) and "error" in out), out
    return out


def make_tree(cg: str, *rels: str) -> int:
    """mkdir -p each rel below cg; returns the number of cgroups in the subtree, cg included."""
    for rel in rels:
        os.makedirs(os.path.join(cg, rel))
    return sum(1 for _ in os.walk(cg))


def show_link_plain(bpftool: str, link_id: int) -> str:
    return run(bpftool, "link", "show", "id", str(link_id))


def show_link_json(bpftool: str, link_id: int) -> dict[str, Any]:
    out = run_json(bpftool, "link", "show", "id", str(link_id))
    assert isinstance(out, dict), out  # one link: one object, no array
    return out


def assert_plain_fields(
    out: str, *, link_id: int, prog_id: int, cgroup_id: int, name: str, nr_files: int, nr_errors: int = 0
) -> None:
    """The patch's plain format:
        N: cgroup_stat  prog P
                cgroup_id C  name 'NAME'
                nr_files F  nr_errors E  mirrored yes
    (cgroup_id 0 is followed by " (detached)")."""
    detached = "" if cgroup_id else " (detached)"
    assert re.search(rf"^{link_id}: cgroup_stat  prog {prog_id}\s*$", out, re.MULTILINE), out
    assert re.search(
        rf"^\tcgroup_id {cgroup_id}{re.escape(detached)}  name '{re.escape(name)}'\s*$", out, re.MULTILINE
    ), out
    assert re.search(rf"^\tnr_files {nr_files}  nr_errors {nr_errors}  mirrored yes\s*$", out, re.MULTILINE), out


def assert_json_equals_link_info(shown: dict[str, Any], fd: int) -> None:
    """Every field bpftool shows equals bpf_link_info as bpffs_sync.libbpf reads it; mirrored is
    true while mirror_fs (mounted with cgroup_mirror) holds the mirror."""
    desc = link_desc(fd)
    assert shown["id"] == desc.link_id
    assert shown["type"] == "cgroup_stat"
    assert shown["prog_id"] == desc.prog_id
    assert shown["cgroup_id"] == desc.cgroup_id
    assert shown["name"] == desc.name
    assert shown["nr_files"] == desc.nr_files
    assert shown["nr_errors"] == desc.nr_errors
    assert shown["mirrored"] is True


# --- bpftool link show -----------------------------------------------------------------------------


def test_link_show_plain(
    bpftool: str, stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]
) -> None:
    """`bpftool link show id N` prints the type, the program, the root's cgroup id, the file name,
    nr_files (one per cgroup of the subtree), nr_errors and the mirror state."""
    n = make_tree(cg, "a/b", "c.scope")
    link_fds.append(stat.attach(cg))
    desc = link_desc(link_fds[0])
    assert desc.nr_files == n
    out = show_link_plain(bpftool, desc.link_id)
    assert_plain_fields(
        out, link_id=desc.link_id, prog_id=desc.prog_id, cgroup_id=os.stat(cg).st_ino, name=NAME, nr_files=n
    )


def test_link_show_json(
    bpftool: str, stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]
) -> None:
    """`bpftool --json link show id N`: the fields of bpf_link_info.cgroup_stat, with the values the
    project's own reader gets, after mkdir and rmdir changed nr_files."""
    n = make_tree(cg, "a/b", "c.scope")
    link_fds.append(stat.attach(cg))
    os.mkdir(os.path.join(cg, "d"))
    os.rmdir(os.path.join(cg, "a", "b"))
    shown = show_link_json(bpftool, link_desc(link_fds[0]).link_id)
    assert shown["cgroup_id"] == os.stat(cg).st_ino
    assert shown["name"] == NAME
    assert shown["nr_files"] == n  # one made, one removed
    assert shown["nr_errors"] == 0
    assert_json_equals_link_info(shown, link_fds[0])


def test_link_show_odd_name_and_errors(
    bpftool: str, stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]
) -> None:
    """A file name with a space and UTF-8 is shown whole (quoted in plain output); a cgroup named like
    the file counts in nr_errors, with its child (the file wins, the subtree is not mirrored)."""
    name = "cpu stat ü"
    link_fds.append(stat.attach(cg, name))
    os.makedirs(os.path.join(cg, name, "below"))
    desc = link_desc(link_fds[0])
    assert (desc.nr_files, desc.nr_errors) == (1, 2)
    out = show_link_plain(bpftool, desc.link_id)
    assert_plain_fields(
        out,
        link_id=desc.link_id,
        prog_id=desc.prog_id,
        cgroup_id=os.stat(cg).st_ino,
        name=name,
        nr_files=1,
        nr_errors=2,
    )
    assert_json_equals_link_info(show_link_json(bpftool, desc.link_id), link_fds[0])


def test_link_show_detached(
    bpftool: str, stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]
) -> None:
    """A detached link (kept by its fd) shows cgroup_id 0, "(detached)" in plain output, no files."""
    make_tree(cg, "a")
    link_fds.append(stat.attach(cg))
    link_id = link_desc(link_fds[0]).link_id
    libbpf.link_detach(link_fds[0])
    desc = link_desc(link_fds[0])
    assert (desc.cgroup_id, desc.nr_files) == (0, 0)
    assert_plain_fields(
        show_link_plain(bpftool, link_id), link_id=link_id, prog_id=desc.prog_id, cgroup_id=0, name=NAME, nr_files=0
    )
    shown = show_link_json(bpftool, link_id)
    assert shown["cgroup_id"] == 0
    assert_json_equals_link_info(shown, link_fds[0])


def test_link_list_shows_the_link(
    bpftool: str, stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]
) -> None:
    """`bpftool --json link show` (every link of the system) lists it with the same fields."""
    make_tree(cg, "a")
    link_fds.append(stat.attach(cg, "listed"))
    link_id = link_desc(link_fds[0]).link_id
    shown = [entry for entry in run_json(bpftool, "link", "show") if entry["id"] == link_id]
    assert len(shown) == 1, shown
    assert shown[0]["name"] == "listed"
    assert_json_equals_link_info(shown[0], link_fds[0])


# --- bpftool prog show, feature probe --------------------------------------------------------------


def test_prog_show_type(
    bpftool: str, stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]
) -> None:
    """`bpftool prog show id P` names the link's program's type cgroup_stat, plain and JSON."""
    link_fds.append(stat.attach(cg))
    prog_id = link_desc(link_fds[0]).prog_id
    out = run(bpftool, "prog", "show", "id", str(prog_id))
    assert re.search(rf"^{prog_id}: cgroup_stat  ", out, re.MULTILINE), out
    shown = run_json(bpftool, "prog", "show", "id", str(prog_id))
    assert (shown["id"], shown["type"]) == (prog_id, "cgroup_stat")


def test_feature_probe_kernel(bpftool: str) -> None:
    """`bpftool feature probe kernel` finds the program type (libbpf's probe loads it with
    expected_attach_type BPF_CGROUP_STAT), with bpf_seq_printf and without bpf_send_signal, which
    the type refuses (the program runs in the reader's context)."""
    out = run(bpftool, "feature", "probe", "kernel")
    assert re.search(r"^eBPF program_type cgroup_stat is available$", out, re.MULTILINE), out
    probed = run_json(bpftool, "feature", "probe", "kernel")
    assert probed["program_types"]["have_cgroup_stat_prog_type"] is True
    helpers = probed["helpers"]["cgroup_stat_available_helpers"]
    assert "bpf_seq_printf" in helpers
    assert "bpf_send_signal" not in helpers
