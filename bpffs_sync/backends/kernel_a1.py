"""The kernel's own mirror (kernel-approach1/): cgroup stat links on a patched kernel.

There the kernel keeps `<bpffs>/cgroup/<path>/<name>` in step with cgroupfs itself, so user space
only attaches one link per stat (KernelMirror.attach) and checks the result (verify). Nothing
here runs per cgroup: no watcher, no reconciler.

- supported(): the running kernel has BPF_PROG_TYPE_CGROUP_STAT (feature probe on its BTF).
- The mirror lives in the bpffs instance mounted with `-o cgroup_mirror` (one per system);
  enable_mirror() remounts a bpffs with it.
- attach() loads the stat's `.stat.bpf.o` as BPF_PROG_TYPE_CGROUP_STAT with its collector, shares
  the stats map pinned under <bpffs>/bpffs-sync/<stat>/ with the user-space mirror, and pins the
  link there as `native_link` so it can be found and detached later. The files hold the link, so
  the pin is for bookkeeping, not lifetime.
- verify() compares the files the kernel made with the cgroups each link's subtree holds.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as stat_mod
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bpffs_sync import libbpf
from bpffs_sync.errors import EnvironmentProblem, KernelUnsupported, LibbpfError, UsageError
from bpffs_sync.mirror import bpffs
from bpffs_sync.paths import PRIVATE_DIR, Layout
from bpffs_sync.programs import StatProgram
from bpffs_sync.stats import Generations, LoadedStat

NATIVE_LINK_PIN = "native_link"
MIRROR_OPTION = "cgroup_mirror"


def supported() -> bool:
    """Does the running kernel carry the series (BPF_PROG_TYPE_CGROUP_STAT)?"""
    return libbpf.vmlinux_has_struct("bpf_cgroup_stat_ctx")


def require_supported() -> None:
    if not supported():
        raise KernelUnsupported("cgroup stat link", "/sys/kernel/btf/vmlinux", errno.EOPNOTSUPP,
                                "kernel lacks BPF_PROG_TYPE_CGROUP_STAT (kernel-approach1 series)")


def mirror_enabled(bpffs_dir: str) -> bool:
    """Is the bpffs at bpffs_dir the instance holding the kernel's mirror?"""
    mount = bpffs.mount_of(bpffs_dir)
    return mount is not None and mount.fstype == "bpf" and MIRROR_OPTION in mount.super_options


def enable_mirror(bpffs_dir: str) -> None:
    """Remount the bpffs at bpffs_dir with cgroup_mirror (the kernel then makes <bpffs>/cgroup)."""
    if mirror_enabled(bpffs_dir):
        return
    res = subprocess.run(["mount", "-o", f"remount,{MIRROR_OPTION}", bpffs_dir],
                         capture_output=True, text=True, check=False)
    if res.returncode != 0 or not mirror_enabled(bpffs_dir):
        hint = ("EBUSY: another bpffs instance holds the mirror; EEXIST: an entry named `cgroup` is in the "
                "way (a user-space mirror? `bpffs-sync clean`)")
        raise EnvironmentProblem("remount cgroup_mirror", bpffs_dir, 0,
                                 f"{res.stderr.strip() or 'option not taken'} ({hint})")


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """What ensure_link found and did for one stat."""

    stat: str
    action: str  # created | adopted | updated (program swapped, files kept)
    link_id: int
    pin: str
    nr_files: int
    nr_errors: int
    collector_adopted: bool


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


def pin_verdict(kind: str, desc: libbpf.CgroupStatLinkDesc | None, name: str, root_id: int) -> str:
    """The pinned object, opened and described: PIN_OURS (this stat's live link at root_id) or
    PIN_OTHER (a prog or map, another link type, a detached link, another stat or another root)."""
    if kind != "link" or desc is None or desc.cgroup_id == 0:
        return PIN_OTHER
    return PIN_OURS if desc.name == name and desc.cgroup_id == root_id else PIN_OTHER


class KernelMirror:
    """One stat loaded for the kernel's mirror: its reader as BPF_PROG_TYPE_CGROUP_STAT, its stats
    map and collector pinned or adopted under <bpffs>/bpffs-sync/<stat>/ exactly as the user-space
    mirror does (stats.LoadedStat). close() drops our fds; links, files and pins stay."""

    def __init__(self, layout: Layout, spec: StatProgram, force_raw_tp: bool = False) -> None:
        self.layout = layout
        self.spec = spec
        self.stat = LoadedStat(layout, spec, force_raw_tp, native=True)

    @property
    def link_pin(self) -> str:
        return self.layout.private_path(self.spec.name, NATIVE_LINK_PIN)

    def attach(self, cgroup_dir: str, name: str | None = None) -> int:
        """Create a link at cgroup_dir (file name: name, else the program's); returns the link fd."""
        try:
            cg_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as err:
            raise UsageError("open cgroup", cgroup_dir, err.errno or 0, os.strerror(err.errno or 0)) from err
        try:
            return libbpf.link_create_cgroup_stat(self.stat.reader.fd(), cg_fd, name)
        finally:
            os.close(cg_fd)

    def ensure_link(self, cgroup_dir: str) -> LinkOutcome:
        """The stat's link at cgroup_dir, pinned at link_pin. A pinned link of ours at that root is
        adopted, its program swapped in place (BPF_LINK_UPDATE: the files stay) when it is not the
        current generation; anything else pinned there is replaced. Idempotent."""
        root_id = os.stat(cgroup_dir).st_ino
        fd = self._pinned_link(root_id)
        action = "adopted"
        if fd is None:
            try:
                fd = self.attach(cgroup_dir, self.spec.name)
            except LibbpfError as err:
                if err.errno == errno.EEXIST:
                    raise EnvironmentProblem(
                        "attach cgroup stat link", self.spec.name, errno.EEXIST,
                        "another link already makes files of this name (`bpffs-sync clean --kernel` detaches it)",
                    ) from None
                raise
            action = "created"
        try:
            desc = libbpf.cgroup_stat_link_info(fd, self.link_pin)
            assert desc is not None
            if action == "adopted" and not Generations.from_pins(self.layout, [self.spec]).judge(
                    self.spec.name, desc.prog_id):
                libbpf.link_update(fd, self.stat.reader.fd(), self.link_pin)
                action = "updated"
            if action == "created":
                libbpf.obj_pin(fd, self.link_pin)
            desc = libbpf.cgroup_stat_link_info(fd, self.link_pin)
            assert desc is not None
        except BaseException:
            if action == "created":  # not pinned: leave nothing behind
                with contextlib.suppress(LibbpfError):
                    libbpf.link_detach(fd, self.link_pin)
            raise
        finally:
            os.close(fd)
        return LinkOutcome(self.spec.name, action, desc.link_id, self.link_pin, desc.nr_files, desc.nr_errors,
                           self.stat.collector_adopted)

    def _pinned_link(self, root_id: int) -> int | None:
        """An fd of the link pinned at link_pin if it is this stat's, live, at root_id; else None,
        and a pin that is definitely something else is removed. A transient failure (EINTR, ENOMEM,
        EAGAIN, EMFILE...) raises and leaves the pin alone: the files hold the link, and a later
        run adopts it."""
        try:
            fd = libbpf.obj_get(self.link_pin)
        except LibbpfError as err:
            verdict = get_error_verdict(err.errno)
            if verdict == PIN_UNKNOWN:
                raise
            if verdict == PIN_OTHER:
                self._unpin()
            return None
        try:
            kind = bpffs.object_kind(fd)
            desc = libbpf.cgroup_stat_link_info(fd, self.link_pin) if kind == "link" else None
        except BaseException:
            os.close(fd)
            raise
        if pin_verdict(kind, desc, self.spec.name, root_id) == PIN_OURS:
            return fd
        os.close(fd)
        self._unpin()  # detached, elsewhere or not ours: the files it made are gone or not ours
        return None

    def _unpin(self) -> None:
        bpffs.remove_tree(self.layout.bpffs, (PRIVATE_DIR, self.spec.name, NATIVE_LINK_PIN))

    def close(self) -> None:
        self.stat.close()

    def __enter__(self) -> KernelMirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attach_stats(layout: Layout, specs: Iterable[StatProgram], force_raw_tp: bool = False) -> list[LinkOutcome]:
    """`bpffs-sync run --kernel`: enable the mirror on layout.bpffs and make sure each stat has its
    link at layout.cgroup_root. One pass, then the kernel keeps the tree; rerunning is a no-op."""
    require_supported()
    enable_mirror(layout.bpffs)
    outcomes = []
    for spec in specs:
        with KernelMirror(layout, spec, force_raw_tp) as km:
            outcomes.append(km.ensure_link(layout.cgroup_root))
    return outcomes


def clean(layout: Layout, names: Iterable[str]) -> int:
    """`bpffs-sync clean --kernel`: detach the links making files of these names (ours or not), then
    drop our pins. The kernel removes the files; <bpffs>/cgroup itself stays with the instance."""
    detached = detach_all(names)
    removed = bpffs.remove_tree(layout.bpffs, (PRIVATE_DIR,))
    return detached + removed


def detach_all(names: Iterable[str] | None = None) -> int:
    """BPF_LINK_DETACH every cgroup stat link (or those whose file name is in names); returns how many."""
    wanted = set(names) if names is not None else None
    done = 0
    for desc in libbpf.cgroup_stat_links():
        if wanted is not None and desc.name not in wanted:
            continue
        try:
            fd = libbpf.link_fd_by_id(desc.link_id)
        except LibbpfError as err:
            if err.errno == errno.ENOENT:
                continue
            raise
        try:
            libbpf.link_detach(fd, f"link id {desc.link_id}")
            done += 1
        finally:
            os.close(fd)
    return done


# --- verify --------------------------------------------------------------------------------------


def link_doc(desc: libbpf.CgroupStatLinkDesc) -> dict[str, Any]:
    """A cgroup stat link as `verify --kernel --json` and `status --json` show it."""
    return {"id": desc.link_id, "name": desc.name, "cgroup_id": desc.cgroup_id, "nr_files": desc.nr_files,
            "nr_errors": desc.nr_errors}


@dataclass(slots=True)
class NativeReport:
    """The kernel's mirror against cgroupfs, for every cgroup stat link."""

    mirror_root: str
    cgroup_root: str
    links: list[libbpf.CgroupStatLinkDesc]
    cgroups: int = 0
    files: int = 0
    missing: list[str] = field(default_factory=list)  # expected files absent
    stale: list[str] = field(default_factory=list)  # entries no link accounts for
    miscounted: list[str] = field(default_factory=list)  # link nr_files != files found
    unrooted: list[str] = field(default_factory=list)  # links whose root is not under cgroup_root
    conflicts: list[str] = field(default_factory=list)  # cgroups named like a link's file

    @property
    def in_sync(self) -> bool:
        return not (self.missing or self.stale or self.miscounted)

    def to_json(self) -> dict[str, Any]:
        return {
            "in_sync": self.in_sync,
            "approach": "kernel",
            "mirror_root": self.mirror_root,
            "cgroup_root": self.cgroup_root,
            "links": [link_doc(d) for d in self.links],
            "cgroups": self.cgroups,
            "files": self.files,
            "drift": {"missing": self.missing, "stale": self.stale, "miscounted": self.miscounted},
            "unrooted": self.unrooted,
            "conflicts": self.conflicts,
        }

    def to_text(self) -> str:
        lines = [f"{'missing':<14} {p}" for p in self.missing]
        lines += [f"{'stale':<14} {p}" for p in self.stale]
        lines += [f"{'miscounted':<14} {p}" for p in self.miscounted]
        lines += [f"{'unrooted':<14} {p}" for p in self.unrooted]
        lines += [f"{'conflict':<14} {p} (cgroup named like a stat file; not mirrored)" for p in self.conflicts]
        drifted = len(self.missing) + len(self.stale) + len(self.miscounted)
        verdict = "in sync" if self.in_sync else f"DRIFT: {drifted} entries"
        lines.append(f"{verdict}: {len(self.links)} kernel links, {self.cgroups} cgroups, "
                     f"{self.files} stat files under {self.mirror_root}")
        return "\n".join(lines)


def _cgroup_paths(cgroup_root: str) -> dict[int, str]:
    """cgroup id (the v2 directory's inode number) -> path relative to cgroup_root ('' = root)."""
    ids: dict[int, str] = {}
    for dirpath, _dirs, _files in os.walk(cgroup_root):
        try:
            ino = os.stat(dirpath).st_ino
        except FileNotFoundError:
            continue
        rel = os.path.relpath(dirpath, cgroup_root)
        ids[ino] = "" if rel == "." else rel
    return ids


def _walk_mirror(mirror_root: str) -> tuple[set[str], set[str]]:
    """(directories, files) under mirror_root, relative to it ('' = mirror_root itself)."""
    dirs: set[str] = set()
    files: set[str] = set()
    if not os.path.isdir(mirror_root):
        return dirs, files
    dirs.add("")
    for dirpath, dirnames, filenames in os.walk(mirror_root):
        rel = os.path.relpath(dirpath, mirror_root)
        base = "" if rel == "." else rel
        for d in dirnames:
            dirs.add(os.path.join(base, d))
        for f in filenames:
            mode = os.lstat(os.path.join(dirpath, f)).st_mode
            if stat_mod.S_ISREG(mode):
                files.add(os.path.join(base, f))
            else:
                files.add(os.path.join(base, f) + "?")  # never expected
    return dirs, files


def _ancestors(rel: str) -> Iterable[str]:
    while rel:
        rel = os.path.dirname(rel)
        yield rel


def verify(bpffs_dir: str, cgroup_root: str) -> NativeReport:
    """Compare <bpffs>/cgroup with what every cgroup stat link's subtree under cgroup_root should show."""
    mirror_root = os.path.join(bpffs_dir, "cgroup")
    report = NativeReport(mirror_root=mirror_root, cgroup_root=cgroup_root, links=libbpf.cgroup_stat_links())
    paths = _cgroup_paths(cgroup_root)
    report.cgroups = len(paths)
    names = {d.name for d in report.links}

    want_files: dict[str, int] = {}  # rel file -> link id
    want_dirs: set[str] = {""}
    shadowed: list[str] = []  # subtrees not mirrored because of a name conflict
    for desc in report.links:
        if desc.cgroup_id == 0:  # detached, kept alive by an fd: makes no files
            continue
        root = paths.get(desc.cgroup_id)
        if root is None:
            report.unrooted.append(f"link {desc.link_id} ({desc.name}): cgroup {desc.cgroup_id}")
            continue
        for rel in sorted(p for p in paths.values() if p == root or p.startswith(root + "/") or root == ""):
            if os.path.basename(rel) in names and rel != "":
                if rel not in shadowed:
                    shadowed.append(rel)
                continue
            want_files[os.path.join(rel, desc.name)] = desc.link_id
            want_dirs.add(rel)
            want_dirs.update(_ancestors(rel))

    def is_shadowed(rel: str) -> bool:
        return any(rel == s or rel.startswith(s + "/") for s in shadowed)

    report.conflicts = sorted(shadowed)
    want_files = {f: i for f, i in want_files.items() if not is_shadowed(os.path.dirname(f))}
    dirs, files = _walk_mirror(mirror_root)
    report.files = len(files)
    report.missing = sorted(os.path.join(mirror_root, f) for f in want_files if f not in files)
    report.stale = sorted(
        [os.path.join(mirror_root, f) for f in files if f not in want_files and not is_shadowed(f)]
        + [os.path.join(mirror_root, d) + "/" for d in dirs if d not in want_dirs and not is_shadowed(d)]
    )
    if os.path.isdir(mirror_root):
        for desc in report.links:
            found = sum(1 for f, i in want_files.items() if i == desc.link_id and f in files)
            if found != desc.nr_files:
                report.miscounted.append(f"link {desc.link_id} ({desc.name}): nr_files {desc.nr_files}, "
                                         f"{found} files found")
    return report
