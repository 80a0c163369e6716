"""Approach 2's verify logic on a plain directory tree: kernel_a2 judges `bpf.stat.*` files in cgroup
directories against link descriptions; here the "cgroups" are tmp directories and the "files" are
regular files whose first line names a cgroup id, as every bpf/ stat prints (the in-guest tests run
the same code against the patched kernel)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bpffs_sync.backends import kernel_a2
from bpffs_sync.libbpf import CgroupfsStatLinkDesc

pytestmark = pytest.mark.unit

FILE = kernel_a2.file_name("hist_oncpu")


def tree(tmp_path: Path, *rels: str) -> dict[str, int]:
    """Directories below tmp_path; returns rel -> inode (the 'cgroup id')."""
    ids = {".": os.stat(tmp_path).st_ino}
    for rel in rels:
        os.makedirs(tmp_path / rel, exist_ok=True)
        ids[rel] = os.stat(tmp_path / rel).st_ino
    return ids


def put_file(tmp_path: Path, rel: str, cgid: int, name: str = FILE) -> None:
    (tmp_path / rel / name).write_text(f"cgroup_id: {cgid}\nslices: 0\n")


def link(root_id: int, nr_files: int, name: str = FILE, link_id: int = 7) -> CgroupfsStatLinkDesc:
    return CgroupfsStatLinkDesc(link_id=link_id, prog_id=1, cgroup_id=root_id, hierarchy_id=0, name=name,
                                nr_files=nr_files, nr_errors=0)


def judge(tmp_path: Path, *links: CgroupfsStatLinkDesc) -> kernel_a2.Report:
    report = kernel_a2.Report([str(tmp_path)])
    kernel_a2._verify_hierarchy(report, str(tmp_path), list(links))
    return report


def test_every_file_in_place_is_in_sync(tmp_path: Path) -> None:
    """A file in the root and every descendant, each naming its own directory: no drift."""
    ids = tree(tmp_path, "a", "a/b")
    for rel, cgid in ids.items():
        put_file(tmp_path, rel, cgid)
    report = judge(tmp_path, link(ids["."], 3))
    assert report.in_sync, report.to_text()
    assert (report.cgroups, report.files) == (3, 3)


def test_missing_file_is_drift(tmp_path: Path) -> None:
    """A cgroup below the link's root without the file: 'missing', and nr_files disagrees too."""
    ids = tree(tmp_path, "a")
    put_file(tmp_path, ".", ids["."])
    report = judge(tmp_path, link(ids["."], 2))
    assert set(report.drift) == {"missing", "nr_files"}
    assert report.drift["missing"][0]["path"] == str(tmp_path / "a" / FILE)


def test_file_of_no_link_is_unexpected(tmp_path: Path) -> None:
    """A bpf.stat.* file outside every link's subtree is 'unexpected'."""
    ids = tree(tmp_path, "a", "b")
    put_file(tmp_path, "a", ids["a"])
    put_file(tmp_path, "b", ids["b"])
    report = judge(tmp_path, link(ids["a"], 1))
    assert [d["path"] for d in report.drift["unexpected"]] == [str(tmp_path / "b" / FILE)]
    assert set(report.drift) == {"unexpected"}


def test_file_naming_another_cgroup_is_wrong_cgroup(tmp_path: Path) -> None:
    """A file whose read names another cgroup is 'wrong_cgroup' with both ids."""
    ids = tree(tmp_path, "a")
    put_file(tmp_path, ".", ids["."])
    put_file(tmp_path, "a", ids["."])
    report = judge(tmp_path, link(ids["."], 2))
    item = report.drift["wrong_cgroup"][0]
    assert (item["expected_cgroup_id"], item["actual_cgroup_id"]) == (ids["a"], ids["."])


def test_child_named_like_the_file_is_not_missing(tmp_path: Path) -> None:
    """Where a child cgroup took the file's name the kernel counts it in nr_errors: no drift."""
    ids = tree(tmp_path, FILE)
    put_file(tmp_path, FILE, ids[FILE])
    report = judge(tmp_path, link(ids["."], 1))
    assert report.in_sync, report.to_text()


def test_root_outside_the_walk(tmp_path: Path) -> None:
    """A link whose root is not under the walked hierarchy is 'root_not_visible'."""
    tree(tmp_path)
    report = judge(tmp_path, link(123456789, 0))
    assert set(report.drift) == {"root_not_visible"}


def test_report_json_and_text(tmp_path: Path) -> None:
    """to_json groups drift by reason under the approach's name; to_text says DRIFT with each item."""
    ids = tree(tmp_path, "a")
    put_file(tmp_path, ".", ids["."])
    report = judge(tmp_path, link(ids["."], 1))
    doc = report.to_json()
    assert doc["approach"] == "approach-2" and doc["in_sync"] is False
    assert list(doc["drift"]) == ["missing"]
    assert report.to_text().startswith("DRIFT") and "missing:" in report.to_text()


def test_pin_names() -> None:
    """v2 links pin as cgroupfs_link, v1 ones per hierarchy."""
    assert (kernel_a2.pin_name(0), kernel_a2.pin_name(3)) == ("cgroupfs_link", "cgroupfs_link_h3")
