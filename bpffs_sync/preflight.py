"""Environment checks run before any command touches the kernel. Each failure is one line, exit 2.

--bpffs must be the root of a whole bpf filesystem (require_bpffs_root): its mount point, not a
directory inside it, nor a bind mount of one of its subdirectories, nor a bpffs mounted inside
another bpffs's mirror or private directory. A daemon on /sys/fs/bpf owns everything below it, so
a second daemon on /sys/fs/bpf/cgroup/x would fight it; the lock (rundir.py) is per superblock, so
a bind mount of the whole bpffs elsewhere reaches the same lock and is refused there.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod

from bpffs_sync import libbpf
from bpffs_sync import programs as programs_mod
from bpffs_sync.errors import EnvironmentProblem, KernelUnsupported, UsageError
from bpffs_sync.mirror import bpffs, cgroupfs
from bpffs_sync.paths import MIRROR_V1, MIRROR_V2, PRIVATE_DIR, Layout
from bpffs_sync.programs import DEFAULT_PROGRAMS, StatProgram, lookup, object_path

VMLINUX_BTF = "/sys/kernel/btf/vmlinux"
DEFAULT_BPFFS = "/sys/fs/bpf"


def require_root() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem("bpffs-sync", "", errno.EPERM, "must run as root (CAP_SYS_ADMIN and CAP_BPF)")


def require_kernel() -> None:
    if not os.path.exists(VMLINUX_BTF):
        raise KernelUnsupported("BTF", VMLINUX_BTF, errno.ENOENT, "kernel built without CONFIG_DEBUG_INFO_BTF")
    if not libbpf.available():
        raise EnvironmentProblem("libbpf", "libbpf.so.1", errno.ENOENT, "install libbpf1")


def default_cgroup_root() -> str:
    """The cgroup2 mount: /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one."""
    for m in bpffs.mounts():
        if m.fstype == "cgroup2":
            return m.mount_point
    raise EnvironmentProblem("cgroup root", "", errno.ENOENT, "no cgroup2 mount found (use --cgroup-root)")


def resolve(bpffs_path: str | None, cgroup_root: str | None, programs: list[str] | None) -> tuple[
    Layout, list[StatProgram]
]:
    """Validate the user's choices; nothing is created or mounted here."""
    specs = [lookup(p) for p in (programs or DEFAULT_PROGRAMS)]
    root = os.path.abspath(cgroup_root) if cgroup_root else default_cgroup_root()
    require_directory("--cgroup-root", root)
    if bpffs_path:
        require_directory("--bpffs", bpffs_path)
    cgroupfs.check_root(root)
    m = bpffs.mount_of(root)
    if m is None or m.fstype != "cgroup2":
        raise EnvironmentProblem("cgroup root", root, 0, "not on a cgroup2 mount (v1 hierarchies come with --v1)")
    return Layout(os.path.abspath(bpffs_path or DEFAULT_BPFFS), root), specs


def prepare_bpffs(layout: Layout, v1: bool = False) -> None:
    """The default bpffs is mounted if absent (docs/architecture.md, section 1); an explicit one must be bpffs already.
    Then what already sits where we keep state must be ours (check_tops)."""
    bpffs.ensure_bpffs(layout.bpffs, mount_if_absent=layout.bpffs == DEFAULT_BPFFS)
    check_tops(layout, v1)


def check_tops(layout: Layout, v1: bool = False) -> None:
    """Refuse (Tampered, exit 2) before doing anything when `cgroup`, `bpffs-sync` (and, when v1
    trees are asked for, `cgroup-v1`) at the bpffs root exists but is not a root-owned directory
    writable by nobody else: the root of a bpffs is world-writable and sticky, so any user can plant
    a symlink or a directory there first. An entry this run does not use is not its business."""
    for top in (layout.mirror_parts[:1], (PRIVATE_DIR,), *([(MIRROR_V1,)] if v1 else [])):
        fd = bpffs.open_sub(layout.bpffs, top, create=False)
        if fd is not None:
            os.close(fd)


def require_objects(specs: list[StatProgram]) -> None:
    for spec in specs:
        object_path(spec)


def require_kfuncs(specs: list[StatProgram]) -> None:
    """Every stat's reader can be loaded here: the kfuncs it calls are in the kernel's BTF (one
    line naming the stat and the first missing kfunc, before anything is loaded or mounted)."""
    for spec in specs:
        programs_mod.require_kfuncs(spec)


def require_directory(option: str, path: str) -> None:
    """An existing directory (followed if a symlink): else `no such directory` / `not a directory`."""
    try:
        st = os.stat(path)
    except OSError as err:
        raise UsageError(option, path, err.errno or 0) from err
    if not stat_mod.S_ISDIR(st.st_mode):
        raise UsageError(option, path, errno.ENOTDIR)


def is_bpffs(path: str) -> bool:
    m = bpffs.mount_of(path)
    return os.path.isdir(path) and m is not None and m.fstype == "bpf"


def require_bpffs_root(path: str) -> None:
    """path is where a whole bpffs is mounted (see the module docstring); call once it is bpffs."""
    real = os.path.realpath(path)
    m = bpffs.mount_of(real)
    if m is None or m.fstype != "bpf":
        raise EnvironmentProblem("bpffs", path, 0, "not a bpf filesystem (mount -t bpf bpf PATH)")
    if m.mount_point != real:
        raise UsageError("--bpffs", path, 0, f"not the root of a bpf filesystem: it is inside the one mounted at "
                                             f"{m.mount_point} (pass that; one daemon serves a whole bpffs)")
    if m.root != "/":
        raise UsageError("--bpffs", path, 0, f"a bind mount of {m.root} inside a bpf filesystem, not of its root "
                                             "(mount the whole bpffs, or pass the bpffs it belongs to)")
    if real != "/":
        outer = bpffs.mount_of(os.path.dirname(real))
        if outer is not None and outer.fstype == "bpf":
            in_fs = os.path.normpath(os.path.join(outer.root, os.path.relpath(real, outer.mount_point)))
            if in_fs.lstrip("/").split("/")[0] in (MIRROR_V2, MIRROR_V1, PRIVATE_DIR):
                raise UsageError("--bpffs", path, 0, f"mounted inside the mirror of the bpffs at {outer.mount_point}")


def require_v1_paths(selectors: list[str]) -> None:
    """A --v1 directory must be a cgroup of a v1 hierarchy mounted now (a controller or hierarchy
    name may wait for its mount; a directory cannot become a v1 cgroup later)."""
    from bpffs_sync.mirror.forest import Selection, hierarchies

    paths = [s for s in selectors if s.startswith("/")]
    if not paths:
        return
    for path in paths:
        require_directory("--v1", path)
    pending = set(Selection(paths).pending(hierarchies()))
    for path in paths:
        if os.path.realpath(path) in pending:
            raise UsageError("--v1", path, 0, "not a cgroup v1 directory (no mounted v1 hierarchy holds it)")
