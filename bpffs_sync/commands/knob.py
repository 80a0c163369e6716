"""`bpffs-sync knob set|get CGROUP STAT [VALUE]`: write or read a knob, a stat file of the kernel's
mirror that takes writes (kernel-approach1 13/15; oncpu_weight is ours: `run --kernel --program
oncpu_weight` attaches it).

    bpffs-sync knob set jobs/a oncpu_weight 200     one write(2) of VALUE's bytes, as given
    bpffs-sync knob get jobs/a oncpu_weight [--json]

CGROUP is the cgroup as /proc/<pid>/cgroup names it, relative to the v2 root (`jobs/a`, `/jobs/a`;
`/` is the root); the file is <bpffs>/cgroup/<CGROUP>/<STAT>. No root needed: the kernel decides
who may write (the owner of the cgroupfs directory of the cgroup's parent, or CAP_SYS_ADMIN; a
delegated subtree's owner sets the knobs of the cgroups it made, not the delegation point's), and
the program what it takes. Its errno is the one line this prints (exit 2): EACCES, EPERM (a file
whose link takes no writes), EINVAL, ERANGE (the program's), E2BIG (more than 256 bytes), ENOENT.

Reached as the daemon reaches the mirror (README, "Running beside unprivileged users"): the bpffs
root is checked to be bpffs, `cgroup` to be a root-owned directory nobody else may write, and every
level below is one name opened relative to its parent's fd with O_NOFOLLOW (O_PATH: search
permission is all a writer has on the mirror's 0551 directories), on the same filesystem; the file
itself too, and it must be a regular file there. A symlink, `..`, a mount point or a FIFO planted
on the way is refused, never followed or blocked on.
"""

from __future__ import annotations

import argparse
import errno
import os
import stat as stat_mod
from dataclasses import dataclass

from bpffs_sync import dirfd, libbpf, printable
from bpffs_sync.commands.common import EXIT_OK, print_json
from bpffs_sync.errors import (
    CgroupGone,
    EnvironmentProblem,
    MountPoint,
    PermissionDenied,
    SyncError,
    UsageError,
    translate_oserror,
)
from bpffs_sync.libbpf import BPF_CGROUP_STAT_WRITE_MAX
from bpffs_sync.paths import MIRROR_V2, RelPath, display, valid_stat_name

DEFAULT_BPFFS = "/sys/fs/bpf"
READ_MAX = 1 << 16  # a stat file's text is far below this (one seq_file buffer)
O_WALK = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

# errno of open(2) or write(2) -> what it means for a knob (the kernel's rule, the program's verdict)
WHY = {
    errno.EACCES: "only the owner of the parent cgroup's directory (who may make and remove this cgroup) or "
                  "CAP_SYS_ADMIN may write it: a delegated subtree's owner sets the knobs of the cgroups it made, "
                  "not the delegation point's",
    errno.EPERM: "this file takes no writes: its link was made without BPF_F_CGROUP_STAT_WRITE (not a knob)",
    errno.EINVAL: "the knob's program refused the value (malformed)",
    errno.ERANGE: "the value is out of the knob's range",
    errno.E2BIG: f"the value is longer than the {BPF_CGROUP_STAT_WRITE_MAX} bytes one write hands the program",
    errno.EAGAIN: "the knob's program asked to be retried",
    errno.ENODEV: "the cgroup was removed",
}


@dataclass(frozen=True, slots=True)
class Target:
    """Where a knob is: the bpffs, the cgroup below its mirror root, the file's name."""

    bpffs: str
    cgroup: RelPath
    stat: str

    @property
    def path(self) -> str:
        """For messages only: the file is reached through directory fds, never by this path."""
        return dirfd.where(os.path.join(self.bpffs, MIRROR_V2), (*self.cgroup, self.stat))


def parse_cgroup(text: str) -> RelPath:
    """CGROUP as /proc/<pid>/cgroup names it (`jobs/a`, `/jobs/a`, `/`): its components. `..` is
    refused (a walk below the mirror root never goes up), and so is an empty argument."""
    if not text:
        raise UsageError("knob", "CGROUP", 0, "empty (the root is `/`)")
    parts = tuple(p for p in text.split("/") if p and p != ".")
    if ".." in parts:
        raise UsageError("knob", text, 0, "`..` in a cgroup path (name it from the v2 root)")
    return parts


def parse_stat(text: str) -> str:
    if not valid_stat_name(text):
        raise UsageError("knob", text, 0, "not a stat file name (a BPF program name: "
                         "letters, digits and _, at most 15)")
    return text


def parse_fields(text: str) -> dict[str, int | str]:
    """A stat file's `key: value` lines (numbers as ints); other lines are skipped (pure)."""
    out: dict[str, int | str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        value = value.strip()
        if sep and key and " " not in key:
            out[key] = int(value) if value.isdigit() else value
    return out


def explain(err: OSError, op: str, target: Target) -> SyncError:
    """The one-line error of a failed open/read/write of the knob: its errno and what it means here."""
    code = err.errno or 0
    if code == errno.ENOENT:
        return CgroupGone(op, target.path, code, "no such file in the cgroup's mirror directory: no link makes it "
                          f"(`bpffs-sync run --kernel --program {target.stat}`), or the cgroup went")
    if code in (errno.ELOOP, errno.ENOTDIR):
        return UsageError(op, target.path, code, "not a directory or file of the kernel's mirror (a symlink is "
                          "never followed)")
    cls = PermissionDenied if code in (errno.EACCES, errno.EPERM) else SyncError
    return cls(op, target.path, code, WHY.get(code, ""))


def _step(parent_fd: int, name: str, what: str, dev: int) -> int:
    """openat(parent_fd, name) as an O_PATH directory fd: never a symlink, never another filesystem.
    O_PATH needs search permission only: the mirror's directories are 0551, listable by their
    owner and group alone, and a knob's writer need not list them."""
    try:
        fd = os.open(name, O_WALK, dir_fd=parent_fd)
    except OSError as err:
        if err.errno == errno.ENOENT:
            raise CgroupGone("open", what, errno.ENOENT, "no such cgroup in the mirror") from err
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UsageError("open", what, err.errno, "not a directory of the kernel's mirror (a symlink is never "
                             "followed)") from err
        raise translate_oserror(err, "open", what) from err
    if os.fstat(fd).st_dev != dev:
        os.close(fd)
        raise MountPoint("open", what, 0, dirfd.MOUNTED)
    return fd


def _mirror_dir(target: Target) -> int:
    """An O_PATH fd of <bpffs>/cgroup/<CGROUP>: the bpffs checked to be one, `cgroup` to be root's
    and writable by nobody else (dirfd.check_owned), each level below one name (_step)."""
    try:
        fd = os.open(target.bpffs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)  # the administrator's path
    except OSError as err:
        raise EnvironmentProblem("bpffs", target.bpffs, err.errno or 0) from err
    try:
        if libbpf.fs_magic(fd) != libbpf.BPF_FS_MAGIC:
            raise EnvironmentProblem("bpffs", target.bpffs, 0, "not a bpf filesystem (mount -t bpf bpf PATH)")
        dev = os.fstat(fd).st_dev
        what = os.path.join(target.bpffs, MIRROR_V2)
        try:
            top = _step(fd, MIRROR_V2, what, dev)
        except CgroupGone as err:
            raise CgroupGone("open", what, errno.ENOENT, "no mirror on this bpffs (`bpffs-sync run --kernel "
                             f"--program {target.stat}`)") from err
        os.close(fd)
        fd = top
        dirfd.check_owned(fd, what, dev)
        for depth, name in enumerate(target.cgroup):
            nxt = _step(fd, name, dirfd.where(what, target.cgroup[: depth + 1]), dev)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_knob(target: Target, flags: int) -> int:
    """The knob file opened with flags (O_RDONLY or O_WRONLY), through directory fds (module docstring)."""
    fd = _mirror_dir(target)
    try:
        dev = os.fstat(fd).st_dev
        try:
            kfd = os.open(target.stat, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
        except OSError as err:
            raise explain(err, "open", target) from err
    finally:
        os.close(fd)
    st = os.fstat(kfd)
    if st.st_dev != dev:
        os.close(kfd)
        raise MountPoint("open", target.path, 0, dirfd.MOUNTED)
    if not stat_mod.S_ISREG(st.st_mode):
        os.close(kfd)
        raise UsageError("open", target.path, 0, "not a stat file (not a regular file)")
    return kfd


def set_knob(target: Target, value: bytes) -> int:
    """One write(2) of value to the knob; the bytes written."""
    fd = open_knob(target, os.O_WRONLY)
    try:
        try:
            n = os.write(fd, value)
        except OSError as err:
            raise explain(err, "write", target) from err
    finally:
        os.close(fd)
    if n != len(value):
        raise SyncError("write", target.path, errno.EIO, f"{n} of {len(value)} bytes taken")
    return n


def get_knob(target: Target) -> str:
    """The knob file's text, as one read returns it (a stat file is one seq_file record)."""
    fd = open_knob(target, os.O_RDONLY)
    try:
        chunks = []
        size = 0
        while size < READ_MAX and (chunk := _read(fd, target)):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "surrogateescape")


def _read(fd: int, target: Target) -> bytes:
    try:
        return os.read(fd, READ_MAX)
    except OSError as err:
        raise explain(err, "read", target) from err


def main(args: argparse.Namespace) -> int:
    target = Target(os.path.abspath(args.bpffs or DEFAULT_BPFFS), parse_cgroup(args.cgroup), parse_stat(args.stat))
    doc: dict[str, object] = {"bpffs": target.bpffs, "cgroup": display(target.cgroup), "stat": target.stat,
                              "path": target.path}
    if args.knob_command == "set":
        value = os.fsencode(args.value)
        doc.update(written=args.value, bytes=set_knob(target, value))
        text = f"set {display(target.cgroup)} {target.stat}: {args.value}"
    else:
        content = get_knob(target)
        doc.update(fields=parse_fields(content), text=content)
        text = content.rstrip("\n")
    if args.json:
        print_json(doc)
    else:
        print(printable.escape_lines(text))
    return EXIT_OK
