"""bpffs: the mount, the walk that yields the actual mirror tree, and the few file operations
a plan needs. OSError is translated here (errors.translate_oserror) and nowhere else.

bpffs quirks handled here:
- A name with a dot is refused by bpf_lookup() (EPERM) unless the parent's mode is 0, so a dotted
  directory is made with the parent briefly chmod'ed to 000. bpffs dentries are persistent, so
  the entry stays reachable afterwards, also after drop_caches. An interrupted chmod shows up as
  BAD_MODE drift and is repaired by the next pass.
- Every pinned object is an S_IFREG inode; which kind it is shows in the fd's anon-inode name.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import subprocess
from collections.abc import Callable

from bpffs_sync import libbpf, mountinfo
from bpffs_sync.errors import EnvironmentProblem, LibbpfError, SyncError, translate_oserror
from bpffs_sync.mirror.tree import Actual, ActualTree, Kind
from bpffs_sync.mountinfo import MountEntry
from bpffs_sync.paths import DIR_MODE, Layout, RelPath, needs_dot_trick

# (stat name, prog id) -> is this program the current generation of that stat?
ProgJudge = Callable[[str, int], bool]

# --- the mount -----------------------------------------------------------------------------------


def mounts() -> list[MountEntry]:
    """The mounts this process sees, in /proc/self/mountinfo order."""
    return mountinfo.read()


def mount_of(path: str) -> MountEntry | None:
    """The mount that contains path (the last, i.e. topmost, of the longest matching mount point)."""
    real = os.path.realpath(path)
    best: MountEntry | None = None
    for m in mounts():
        mp = m.mount_point
        if (real == mp or real.startswith(mp.rstrip("/") + "/")) and (
            best is None or len(mp) >= len(best.mount_point)
        ):
            best = m
    return best


def ensure_bpffs(path: str, mount_if_absent: bool) -> None:
    """Make sure path is a writable bpffs, mounting one there if allowed and needed."""
    if not os.path.isdir(path):
        raise EnvironmentProblem("bpffs", path, errno.ENOENT, "no such directory")
    m = mount_of(path)
    if m is None or m.fstype != "bpf":
        if not mount_if_absent:
            raise EnvironmentProblem("bpffs", path, 0, "not a bpf filesystem (mount -t bpf bpf PATH)")
        res = subprocess.run(["mount", "-t", "bpf", "bpf", path], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise EnvironmentProblem("mount bpffs", path, 0, res.stderr.strip() or "mount failed")
        m = mount_of(path)
        if m is None or m.fstype != "bpf":
            raise EnvironmentProblem("mount bpffs", path, 0, "mount did not produce a bpf filesystem")
    if "ro" in m.options:
        raise EnvironmentProblem("bpffs", path, errno.EROFS, "mounted read-only")


# --- file operations -----------------------------------------------------------------------------


def mkdir(path: str, mode: int = DIR_MODE) -> None:
    """mkdir that accepts dotted names and tolerates an existing directory."""
    parent, name = os.path.split(path)
    try:
        if needs_dot_trick(name):
            old = os.stat(parent).st_mode & 0o7777
            os.chmod(parent, 0)
            try:
                os.mkdir(path, mode)
            finally:
                os.chmod(parent, old)
        else:
            os.mkdir(path, mode)
        os.chmod(path, mode)  # umask-free, exact
    except FileExistsError:
        if not os.path.isdir(path):
            raise SyncError("mkdir", path, errno.EEXIST, "exists and is not a directory") from None
    except OSError as err:
        raise translate_oserror(err, "mkdir", path) from err


def symlink(target: str, path: str) -> None:
    """A symlink at path (a dotless name: controller names have no dots) pointing at target."""
    try:
        os.symlink(target, path)
    except FileExistsError:
        if not (os.path.islink(path) and os.readlink(path) == target):
            raise SyncError("symlink", path, errno.EEXIST, "exists and is not that symlink") from None
    except OSError as err:
        raise translate_oserror(err, "symlink", path) from err


def chmod(path: str, mode: int = DIR_MODE) -> None:
    try:
        os.chmod(path, mode)
    except OSError as err:
        raise translate_oserror(err, "chmod", path) from err


def remove(path: str) -> bool:
    """Unpin a file or remove an (empty) directory. False when it was already gone."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as err:
        raise translate_oserror(err, "remove", path) from err
    return True


def remove_tree(path: str) -> int:
    """Remove path and everything below it, post-order. Returns the number of entries removed."""
    n = 0
    if os.path.isdir(path) and not os.path.islink(path):
        try:
            names = os.listdir(path)
        except FileNotFoundError:
            return 0
        for name in names:
            n += remove_tree(os.path.join(path, name))
    return n + int(remove(path))


# --- the actual tree -----------------------------------------------------------------------------


def object_kind(fd: int) -> str:
    """'link', 'prog', 'map' (from the fd's anon-inode name, e.g. anon_inode:bpf-link) or ''."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""
    return target.removeprefix("anon_inode:bpf-") if target.startswith("anon_inode:bpf-") else ""


def describe_pin(path: str, judge: ProgJudge) -> Actual:
    """What the object pinned at path is, as the diff needs it."""
    try:
        fd = libbpf.obj_get(path)
    except LibbpfError as err:
        return Actual(Kind.OTHER, detail=str(err))
    try:
        if object_kind(fd) != "link":
            return Actual(Kind.OTHER, detail=f"pinned {object_kind(fd) or 'object'}, not a link")
        info = libbpf.link_info(fd, path)
        if info.link_type != libbpf.BPF_LINK_TYPE_ITER or info.order != libbpf.BPF_CGROUP_ITER_SELF_ONLY:
            return Actual(Kind.OTHER, detail=f"link type {info.link_type}, not a SELF_ONLY cgroup iterator")
        stat = os.path.basename(path)
        return Actual(Kind.PIN, cgroup_id=info.cgroup_id, prog_ok=judge(stat, info.prog_id))
    finally:
        os.close(fd)


def _entry(path: str, judge: ProgJudge) -> Actual | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except PermissionError:
        return None  # dotted name that does not exist: bpf_lookup() says EPERM, not ENOENT
    except OSError as err:
        raise translate_oserror(err, "lstat", path) from err
    if stat_mod.S_ISDIR(st.st_mode):
        return Actual(Kind.DIR, mode=st.st_mode & 0o7777)
    if stat_mod.S_ISREG(st.st_mode):
        return describe_pin(path, judge)
    return Actual(Kind.OTHER, detail="not a bpffs object")


def walk(layout: Layout, judge: ProgJudge, scope: RelPath = ()) -> ActualTree:
    """Actual entries of the mirror subtree at scope, plus the entries on the way down to it."""
    tree: ActualTree = {}
    for depth in range(len(scope)):
        anc = scope[:depth]
        entry = _entry(layout.mirror_path(anc), judge)
        if entry is None:
            return tree
        tree[anc] = entry
    top = _entry(layout.mirror_path(scope), judge)
    if top is None:
        return tree
    tree[scope] = top
    stack = [scope] if top.kind is Kind.DIR else []
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(layout.mirror_path(rel)) as it:
                children = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        except FileNotFoundError:
            continue
        except OSError as err:
            raise translate_oserror(err, "scandir", layout.mirror_path(rel)) from err
        for name, is_dir in children:
            child = (*rel, name)
            entry = _entry(layout.mirror_path(child), judge)
            if entry is None:
                continue
            tree[child] = entry
            if is_dir:
                stack.append(child)
    return tree
