"""/proc/self/mountinfo, parsed (proc_pid_mountinfo(5)). Pure parsing plus one reader.

    36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    (1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)   (10)         (11)

Fields 4 (root of the mount within its filesystem) and 5 (mount point) are octal-escaped by the
kernel's show_mountinfo(): space, tab, newline and backslash become \\040, \\011, \\012, \\134.
Optional fields (7) run until the lone "-" separator. Names are bytes on Linux; undecodable ones
travel as surrogate escapes, like every path in bpffs-sync.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MOUNTINFO = "/proc/self/mountinfo"
_OCTAL = re.compile(rb"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class MountEntry:
    mount_id: int
    dev: str  # major:minor of the filesystem (a v1 cgroup hierarchy mounted twice shows the same)
    root: str  # the directory of the filesystem this mount shows ("/" unless a bind of a subdirectory)
    mount_point: str
    fstype: str
    options: frozenset[str]  # per-mount options (field 6)
    super_options: tuple[str, ...]  # per-superblock options (field 11), in the kernel's order


def unescape(field: str) -> str:
    """Undo the kernel's octal escapes (\\040 -> space); other bytes pass through unchanged."""
    raw = field.encode(errors="surrogateescape")
    return _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), raw).decode(errors="surrogateescape")


def parse_line(line: str) -> MountEntry | None:
    """One mountinfo line, or None when it does not have the documented shape."""
    left, sep, right = line.rstrip("\n").partition(" - ")
    fields = left.split(" ")
    rfields = right.split(" ")
    if not sep or len(fields) < 6 or len(rfields) < 3:
        return None
    try:
        mount_id = int(fields[0])
    except ValueError:
        return None
    return MountEntry(mount_id, fields[2], unescape(fields[3]), unescape(fields[4]), rfields[0],
                      frozenset(fields[5].split(",")), tuple(rfields[2].split(",")))


def parse(text: str) -> list[MountEntry]:
    return [e for e in map(parse_line, text.splitlines()) if e is not None]


def read(path: str = MOUNTINFO) -> list[MountEntry]:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return parse(f.read())
