"""What the three modes share on one bpffs, and who uses it: so that the clean of one mode never
removes what another mode's pins or links read from.

Each stat's private directory, <bpffs>/bpffs-sync/<stat>/, holds its stats map and its collector
link (loader.LoadedStat), pinned once and adopted by every mode:

    user-space  its iterator pins under <bpffs>/cgroup and <bpffs>/cgroup-v1 run programs that read
                the map the collector fills
    kernel      Approach 1's links, pinned there as `native_link` (v2) / `native_link_h<id>` (v1)
    approach-2  Approach 2's links, pinned there as `cgroupfs_link` (v2) / `cgroupfs_link_h<id>` (v1)

Unpin the collector and every file of every mode reading that map freezes silently. So a mode's
clean removes its own pins, and a stat's directory only when no other mode uses it (users()).
See docs/architecture.md, "Backends".
"""

from __future__ import annotations

import os

from bpffs_sync import dirfd
from bpffs_sync.errors import Tampered
from bpffs_sync.mirror import bpffs
from bpffs_sync.paths import MIRROR_V1, PRIVATE_DIR, Layout

# The modes by their user-visible names (`status`, `--kernel`): "kernel" is Approach 1 only, the name
# kept for the command line and `status` readers; the code calls it APPROACH_1.
USER_SPACE, APPROACH_1, APPROACH_2 = "user-space", "kernel", "approach-2"
A1_LINK_PIN = "native_link"  # v2, the name on disk kept: pins of earlier releases are adopted; native_link_h<id>: v1
A2_LINK_PIN = "cgroupfs_link"  # v2; cgroupfs_link_h<hierarchy id> on a v1 hierarchy
MIRROR_OPTION = "cgroup_mirror"  # bpffs mount option of Approach 1: this instance holds the kernel's mirror
USED_BY = {
    APPROACH_1: "Approach 1's cgroup stat links: `bpffs-sync clean --kernel` detaches them",
    APPROACH_2: "Approach 2's cgroupfs links: `bpffs-sync clean --approach 2` detaches them",
    USER_SPACE: "the user-space mirror's pins: `bpffs-sync clean --user-space` removes them",
}


def mirror_enabled(bpffs_dir: str) -> bool:
    """Is the bpffs at bpffs_dir the instance holding Approach 1's kernel mirror?"""
    mount = bpffs.mount_of(bpffs_dir)
    return mount is not None and mount.fstype == "bpf" and MIRROR_OPTION in mount.super_options


def link_pin(base: str, hierarchy_id: int) -> str:
    """A kernel mode's link pin on a hierarchy: `<base>` (v2), `<base>_h<id>` (v1; no dots in bpffs names)."""
    return base if hierarchy_id == 0 else f"{base}_h{hierarchy_id}"


def is_link_pin(name: str, base: str) -> bool:
    """Is `name` one of link_pin(base, ...)?"""
    rest = name[len(base) + 2:]
    return name == base or (name.startswith(base + "_h") and rest.isdigit())


def is_a1_pin(name: str) -> bool:
    return is_link_pin(name, A1_LINK_PIN)


def is_a2_pin(name: str) -> bool:
    return name == A2_LINK_PIN or name.startswith(A2_LINK_PIN + "_h")


def link_users(entries: list[str]) -> set[str]:
    """The kernel modes whose link pins are among a stat directory's entries."""
    found = set()
    if any(is_a1_pin(e) for e in entries):
        found.add(APPROACH_1)
    if any(is_a2_pin(e) for e in entries):
        found.add(APPROACH_2)
    return found


def private_entries(layout: Layout) -> dict[str, list[str]]:
    """{stat: entry names} of <bpffs>/bpffs-sync, read through checked directory fds (a planted
    `bpffs-sync` is Tampered, never followed)."""
    fd = bpffs.open_sub(layout.bpffs, (PRIVATE_DIR,), create=False)
    if fd is None:
        return {}
    out: dict[str, list[str]] = {}
    try:
        with os.scandir(fd) as it:
            stats = [e.name for e in it if e.is_dir(follow_symlinks=False)]
        for stat in stats:
            sub = dirfd.open_dir(fd, stat, os.path.join(layout.private_root, stat))
            try:
                out[stat] = os.listdir(sub)
            finally:
                os.close(sub)
    finally:
        os.close(fd)
    return out


def user_space_tops(layout: Layout) -> list[tuple[str, ...]]:
    """The trees the user-space mirror keeps on this bpffs: <bpffs>/cgroup and <bpffs>/cgroup-v1;
    none on the kernel's mirror instance, where both are the kernel's (Approach 1 makes cgroup-v1/
    with cgroup/ since its v1 support) and a user-space run is refused."""
    if mirror_enabled(layout.bpffs):
        return []
    return [layout.mirror_parts, (MIRROR_V1,)]


def user_space_present(layout: Layout) -> bool:
    """Does a user-space mirror (a tree of ours) exist on this bpffs?"""
    for top in user_space_tops(layout):
        try:
            fd = bpffs.open_sub(layout.bpffs, top, create=False)
        except Tampered:  # planted, not ours: not a mirror of ours either
            continue
        if fd is not None:
            os.close(fd)
            return True
    return False


def users(layout: Layout, entries: dict[str, list[str]] | None = None) -> dict[str, set[str]]:
    """stat -> the modes using its private directory (its map and collector)."""
    entries = private_entries(layout) if entries is None else entries
    everyone = {USER_SPACE} if user_space_present(layout) else set()
    return {stat: link_users(names) | everyone for stat, names in entries.items()}


def remove_own(layout: Layout, mode: str, stats: list[str], own_pin: str | None = None) -> int:
    """A kernel mode's clean, in the private directory: for each stat, its own link pins (own_pin on
    every hierarchy: link_pin(own_pin, ...), or every Approach 2 pin), and the stat's whole
    directory when no other mode uses it. Returns how many entries went."""
    entries = private_entries(layout)
    using = users(layout, entries)
    done = 0
    for stat in stats:
        if stat not in entries:
            continue
        if using[stat] - {mode}:
            for name in entries[stat]:
                if is_a2_pin(name) if own_pin is None else is_link_pin(name, own_pin):
                    done += bpffs.remove_tree(layout.bpffs, (PRIVATE_DIR, stat, name))
        else:
            done += bpffs.remove_tree(layout.bpffs, (PRIVATE_DIR, stat))
    if entries and not private_entries(layout):  # nothing of any mode left: the directory goes too
        done += bpffs.remove_tree(layout.bpffs, (PRIVATE_DIR,))
    return done
