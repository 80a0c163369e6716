"""One stat's cgroup stat link, made once and adopted after: what both kernel backends share.

A link is pinned in the stat's private directory (<bpffs>/bpffs-sync/<stat>/, checked to be ours:
stats.private_dir), reached through that directory's fd, never by path. ensure_link() adopts a live
link of ours pinned there (swapping its program in place with BPF_LINK_UPDATE when the stats map was
replaced: the files stay), else creates one and pins it. A pin is removed only on a definite
verdict (it is not a BPF object, or a link that is not ours: detached, another stat's, rooted
elsewhere); a transient failure (EINTR, ENOMEM, EAGAIN, EMFILE...) raises and keeps it, since the
files hold the link and a later run adopts it.

Subclasses (kernel_a1.KernelMirror, kernel_a2.CgroupfsStat) say how their link is created and
described, which one is theirs, and where it is pinned.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as stat_mod
from abc import ABC, abstractmethod
from typing import Protocol, Self

from bpffs_sync import libbpf
from bpffs_sync.errors import EnvironmentProblem, LibbpfError, UsageError
from bpffs_sync.loader import Generations, LoadedStat, private_dir
from bpffs_sync.mirror import bpffs
from bpffs_sync.paths import PRIVATE_DIR, Layout
from bpffs_sync.programs import StatProgram

PIN_OURS, PIN_OTHER, PIN_ABSENT, PIN_UNKNOWN = "ours", "other", "absent", "unknown"


def get_error_verdict(err: int) -> str:
    """What a failed BPF_OBJ_GET of the link pin says about it. Only a definite answer may lead to
    the pin's removal: ENOENT (gone: nothing to remove) and EACCES (the inode is not a pinned BPF
    object, kernel/bpf/inode.c bpf_inode_type(); we are root, so not DAC). Anything else (EINTR,
    ENOMEM, EAGAIN, EMFILE, ...) is PIN_UNKNOWN: raise, keep the pin."""
    if err == errno.ENOENT:
        return PIN_ABSENT
    if err == errno.EACCES:
        return PIN_OTHER
    return PIN_UNKNOWN


def file_cgroup_id(dir_fd: int, name: str) -> int | str:
    """The cgroup a kernel-made stat file (either series) names on the first line of one read()
    (`cgroup_id: <id>`, as every bpf/ stat prints); a string says why it could not be read; -1: a
    program that prints no id (its identity is unknown, not wrong)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as err:
        return f"open: {os.strerror(err.errno or 0)}"
    try:
        head = os.read(fd, 65536).split(b"\n", 1)[0]
    except OSError as err:
        return f"read: {os.strerror(err.errno or 0)}"
    finally:
        os.close(fd)
    key, _, value = head.partition(b":")
    return int(value) if key == b"cgroup_id" and value.strip().isdigit() else -1


class LinkDesc(Protocol):
    """What either series' link info says, as ensure_link needs it."""

    @property
    def link_id(self) -> int: ...

    @property
    def prog_id(self) -> int: ...


class StatLink(ABC):
    """One stat loaded as BPF_PROG_TYPE_CGROUP_STAT, its map and collector pinned or adopted exactly
    as the user-space mirror does (loader.LoadedStat). close() drops our fds; links, files, pins stay."""

    attach_op = "attach cgroup stat link"
    exists_hint = ""  # what EEXIST at link create means, and what detaches the other link

    def __init__(self, layout: Layout, spec: StatProgram, force_raw_tp: bool = False) -> None:
        self.layout = layout
        self.spec = spec
        self.stat = LoadedStat(layout, spec, force_raw_tp, cgroup_stat=True)

    @abstractmethod
    def _create(self, prog_fd: int, cgroup_fd: int, name: str | None) -> int:
        """BPF_LINK_CREATE of this series' link; its fd."""

    @abstractmethod
    def _describe(self, fd: int, what: str) -> LinkDesc | None:
        """The link at fd in this series' view; None for any other object."""

    @abstractmethod
    def _ours(self, desc: LinkDesc, root_id: int, hierarchy_id: int) -> bool:
        """Is this live link the stat's, at that root?"""

    @abstractmethod
    def pin_name(self, hierarchy_id: int) -> str:
        """The link's pin in the stat's private directory."""

    def file_name(self) -> str:
        """The name of the files the stat's link makes."""
        return self.spec.name

    def attach(self, cgroup_dir: str, name: str | None = None) -> int:
        """A new link at cgroup_dir (file name: name, else the program's); returns its fd."""
        try:
            cg_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise UsageError("open cgroup", cgroup_dir, err.errno or 0, os.strerror(err.errno or 0)) from err
        try:
            return self._create(self.stat.reader.fd(), cg_fd, name)
        finally:
            os.close(cg_fd)

    def _ensure(self, cgroup_dir: str, hierarchy_id: int = 0) -> tuple[str, LinkDesc, str]:
        """(action, link info, pin path): the stat's link at cgroup_dir, pinned; adopted (its program
        swapped when not the current generation) if a live link of ours at that root is pinned, else
        created. Idempotent."""
        name = self.pin_name(hierarchy_id)
        pin = self.layout.private_path(self.spec.name, name)
        root_id = os.stat(cgroup_dir).st_ino
        dir_fd = private_dir(self.layout, self.spec.name, create=True)
        assert dir_fd is not None
        try:
            fd = self._pinned_link(dir_fd, name, pin, root_id, hierarchy_id)
            action = "adopted"
            if fd is None:
                try:
                    fd = self.attach(cgroup_dir, self.spec.name)
                except LibbpfError as err:
                    if err.errno == errno.EEXIST:
                        raise EnvironmentProblem(self.attach_op, self.file_name(), errno.EEXIST,
                                                 self.exists_hint) from None
                    raise
                action = "created"
            try:
                desc = self._describe(fd, pin)
                assert desc is not None
                if action == "adopted" and not Generations.from_pins(self.layout, [self.spec]).judge(
                        self.spec.name, desc.prog_id):
                    libbpf.link_update(fd, self.stat.reader.fd(), pin)
                    action = "updated"
                if action == "created":
                    libbpf.obj_pin_at(fd, dir_fd, name, pin)
                desc = self._describe(fd, pin)
                assert desc is not None
            except BaseException:
                if action == "created":  # not pinned: leave nothing behind
                    with contextlib.suppress(LibbpfError):
                        libbpf.link_detach(fd, pin)
                raise
            finally:
                os.close(fd)
        finally:
            os.close(dir_fd)
        return action, desc, pin

    def _pinned_link(self, dir_fd: int, name: str, pin: str, root_id: int, hierarchy_id: int) -> int | None:
        """An fd of the live link of ours pinned as `name`, rooted at root_id; else None, and a pin
        that is definitely something else is removed. A transient failure raises, the pin stays."""
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat_mod.S_ISREG(st.st_mode):
            self._unpin(hierarchy_id)
            return None
        try:
            fd = libbpf.obj_get_at(dir_fd, name, pin)
        except LibbpfError as err:
            verdict = get_error_verdict(err.errno)
            if verdict == PIN_UNKNOWN:
                raise
            if verdict == PIN_OTHER:
                self._unpin(hierarchy_id)
            return None
        try:
            desc = self._describe(fd, pin) if bpffs.object_kind(fd) == "link" else None
        except BaseException:
            os.close(fd)
            raise
        if desc is not None and self._ours(desc, root_id, hierarchy_id):
            return fd
        os.close(fd)
        self._unpin(hierarchy_id)  # detached, elsewhere or not ours: the files it made are gone or not ours
        return None

    def _unpin(self, hierarchy_id: int) -> None:
        bpffs.remove_tree(self.layout.bpffs, (PRIVATE_DIR, self.spec.name, self.pin_name(hierarchy_id)))

    def rehome(self, layout: Layout) -> None:
        """The same loaded stat, for links pinned in another bpffs instance (LoadedStat.rehome)."""
        self.layout = layout
        self.stat.rehome(layout)

    @property
    def closed(self) -> bool:
        return self.stat.obj.closed

    def close(self) -> None:
        self.stat.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
