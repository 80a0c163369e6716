"""The backend seam: `auto` picks the series the kernel carries, `status` shows the chosen backend's
part (Approach 2's links for `--approach 2`), and the clean of one mode never removes what another
mode's pins or links read from. The kernel series cannot run on this stock kernel: their links are
stood in for by another link pinned under their pin names, and the link listing by monkeypatch."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from helpers import Mirror, assert_one_line_error

from bpffs_sync import libbpf, series
from bpffs_sync.backends import backend_class, kernel_a1, kernel_a2, sharing, user_space
from bpffs_sync.backends.base import Request
from bpffs_sync.commands.status import status, to_text
from bpffs_sync.libbpf import CgroupfsStatLinkDesc
from bpffs_sync.loader import COLLECTOR_PIN
from bpffs_sync.mirror import bpffs
from bpffs_sync.paths import PRIVATE_DIR
from bpffs_sync.programs import lookup

STAT = "hist_oncpu"
UAPI = series.Uapi(prog_type=33, attach_type=62, link_type=16, cgroupfs_flag=1)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("carried", "cls"),
    [
        (series.Carried(None, False, False), user_space.UserSpace),
        (series.Carried(UAPI, True, False), kernel_a1.KernelA1),
        (series.Carried(UAPI, False, True), kernel_a2.KernelA2),
        (series.Carried(UAPI, True, True), kernel_a1.KernelA1),
    ],
)
def test_auto_picks_the_series_the_kernel_carries(
    monkeypatch: pytest.MonkeyPatch, carried: series.Carried, cls: type
) -> None:
    """auto: Approach 1 when the kernel has its mirror, else Approach 2, else user space; an explicit mode is kept."""
    monkeypatch.setattr(series, "carried", lambda: carried)
    assert backend_class("auto") is cls
    assert backend_class("approach-2") is kernel_a2.KernelA2 and backend_class("user-space") is user_space.UserSpace


@pytest.mark.parametrize("argv", [["status", "--approach", "2"], ["status", "--kernel"], ["clean", "--kernel"]])
def test_status_of_a_kernel_mode_on_a_stock_kernel_is_one_line(mirror: Mirror, argv: list[str]) -> None:
    """This host's kernel has neither series: a kernel mode's status is refused in one line, exit 2."""
    assert_one_line_error(mirror.cli(*argv), "kernel lacks")


def test_status_approach_2_shows_its_links(mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    """status through the Approach 2 backend: its links, in JSON and text, and no user-space mirror part."""
    link = CgroupfsStatLinkDesc(
        link_id=41, prog_id=7, cgroup_id=1, hierarchy_id=3, name="bpf.stat.hist_oncpu", nr_files=12, nr_errors=0
    )
    monkeypatch.setattr(libbpf, "cgroupfs_stat_links", lambda: [link])
    doc = status(kernel_a2.KernelA2(), Request(mirror.layout, [lookup(STAT)]))
    assert doc["mode"] == "approach-2"
    assert doc["approach_2"]["links"] == [
        {
            "id": 41,
            "name": "bpf.stat.hist_oncpu",
            "cgroup_id": 1,
            "hierarchy_id": 3,
            "nr_files": 12,
            "nr_errors": 0,
            "prog_id": 7,
        }
    ]
    assert "mirror" not in doc and "v1" not in doc and "kernel" not in doc
    assert "cgroupfs link 41 bpf.stat.hist_oncpu: root cgroup 1 on hierarchy 3, 12 files, 0 errors" in to_text(doc)


def test_status_user_space_shows_the_mirror(mirror: Mirror) -> None:
    """status through the user-space backend: the mirror's counts and the v1 trees, no kernel links."""
    os.mkdir(mirror.cg("a"))
    mirror.cli("run", "--once", check=True)
    doc = mirror.status()
    assert doc["mode"] == "user-space" and doc["mirror"] == {"dirs": 2, "stat_files": 2}
    assert "approach_2" not in doc and "kernel" not in doc


# --- clean: each mode its own pins ------------------------------------------------------------------


@pytest.fixture
def once(mirror: Mirror) -> Iterator[Mirror]:
    """A user-space mirror of one cgroup made by `run --once`: the stat's map and collector pinned."""
    os.mkdir(mirror.cg("x"))
    mirror.cli("run", "--once", check=True)
    yield mirror


def _private(m: Mirror) -> str:
    return os.path.join(m.bpffs, PRIVATE_DIR, STAT)


def _stand_in(m: Mirror, name: str) -> None:
    """A link pinned as `name` beside the collector, standing in for a kernel mode's link pin."""
    fd = libbpf.obj_get(os.path.join(_private(m), COLLECTOR_PIN))
    try:
        libbpf.obj_pin(fd, os.path.join(_private(m), name))
    finally:
        os.close(fd)


SHARED = sorted([COLLECTOR_PIN, lookup(STAT).map_name()])


def test_user_space_clean_refuses_while_approach_2_uses_the_collector(once: Mirror) -> None:
    """An Approach 2 link pin beside the collector: the user-space clean refuses and removes nothing
    (unpinning the collector would freeze every bpf.stat file's counts)."""
    _stand_in(once, sharing.A2_LINK_PIN + "_h4")
    assert_one_line_error(once.cli("clean"), "kernel links use the collectors of hist_oncpu", "clean --approach 2")
    assert sorted(os.listdir(_private(once))) == sorted([*SHARED, sharing.A2_LINK_PIN + "_h4"])
    assert os.path.exists(once.stat_path("x"))


def test_approach_2_clean_keeps_what_the_user_space_mirror_reads(once: Mirror) -> None:
    """clean --approach 2 removes its link pins only: the user-space mirror still reads the map its
    collector fills, and verifies in sync."""
    _stand_in(once, sharing.A2_LINK_PIN)
    _stand_in(once, sharing.A2_LINK_PIN + "_h4")
    assert kernel_a2.clean(once.layout, [STAT]) == 2
    assert sorted(os.listdir(_private(once))) == SHARED
    assert once.cli("verify").returncode == 0


def test_approach_1_clean_keeps_approach_2_pins_and_the_collector(once: Mirror) -> None:
    """clean --kernel removes Approach 1's link pin only while Approach 2's pins use the stat's collector."""
    _stand_in(once, sharing.A1_LINK_PIN)
    _stand_in(once, sharing.A2_LINK_PIN)
    assert kernel_a1.clean(once.layout, [STAT]) == 1
    assert sorted(os.listdir(_private(once))) == sorted([*SHARED, sharing.A2_LINK_PIN])


def test_a_kernel_clean_with_no_other_user_removes_the_stat_directory(once: Mirror) -> None:
    """With no user-space mirror and no other mode's pin, clean --approach 2 removes the whole private directory."""
    _stand_in(once, sharing.A2_LINK_PIN)
    bpffs.remove_tree(once.bpffs, once.layout.mirror_parts)
    assert sharing.users(once.layout) == {STAT: {sharing.APPROACH_2}}
    assert kernel_a2.clean(once.layout, [STAT]) >= 3
    assert not os.path.exists(os.path.join(once.bpffs, PRIVATE_DIR))
