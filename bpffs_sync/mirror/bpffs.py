"""bpffs: the mount, the walk that yields the actual mirror tree, and the few file operations a
plan needs. OSError is translated here (errors.translate_oserror) and nowhere else.

Everything below the bpffs root goes through directory fds (dirfd.py): the root of a bpffs is
world-writable and sticky, so what sits there (`cgroup`, `cgroup-v1`, `bpffs-sync`) may have been
planted by any user. It is adopted only when it is a directory owned by root and writable by nobody
else (dirfd.owned_dir); below it only root can write, and still no symlink is ever followed.

bpffs quirks handled here:
- A name with a dot is refused by bpf_lookup() (EPERM) unless the parent's mode is 0, so a dotted
  directory is made with the parent briefly fchmod'ed to 000. bpffs dentries are persistent, so
  the entry stays reachable afterwards, also after drop_caches. An interrupted chmod shows up as
  BAD_MODE drift and is repaired by the next pass.
- Every pinned object is an S_IFREG inode; which kind it is shows in the fd's anon-inode name.

No step crosses a mount point (dirfd.open_dir, dirfd.lstat_at compare st_dev with the parent's):
a filesystem mounted below a mirror root (a tmpfs, another bpffs bound there) is an entry of
Kind.MOUNT to the walk, never entered, chmodded or removed, and remove_tree_at leaves it and the
directories holding it in place.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import subprocess
from collections.abc import Callable

from bpffs_sync import dirfd, interrupt, libbpf, log, membudget, mountinfo
from bpffs_sync.errors import (
    CgroupGone,
    EnvironmentProblem,
    LibbpfError,
    MountPoint,
    Remounted,
    SyncError,
    translate_oserror,
)
from bpffs_sync.mirror.tree import Actual, ActualView, Kind
from bpffs_sync.mountinfo import MountEntry
from bpffs_sync.paths import DIR_MODE, Layout, RelPath, needs_dot_trick

# (stat name, prog id) -> is this program the current generation of that stat?
ProgJudge = Callable[[str, int], bool]
# (directory fd, name, path for messages, its lstat) -> what the regular file `name` is, for the diff
FileJudge = Callable[[int, str, str, os.stat_result], Actual]

_log = log.get(__name__)
_UMASK = os.umask(0o022)  # read once, at import (before any thread): os.umask can only set
os.umask(_UMASK)

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
        what = "not a directory" if os.path.lexists(path) else "no such directory"
        raise EnvironmentProblem("bpffs", path, errno.ENOTDIR if os.path.lexists(path) else errno.ENOENT, what)
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


def open_root(bpffs_root: str, expect_dev: int = 0) -> int:
    """The bpffs root (the administrator's path: symlinks in it are theirs), checked by fstatfs to
    be bpffs and, given expect_dev, to be the instance whose lock the daemon holds (Remounted when
    another one is mounted there now). The caller closes the fd."""
    try:
        fd = os.open(bpffs_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise EnvironmentProblem("bpffs", bpffs_root, err.errno or 0) from err
    try:
        if libbpf.fs_magic(fd) != libbpf.BPF_FS_MAGIC:
            raise EnvironmentProblem("bpffs", bpffs_root, 0, "not a bpf filesystem (mount -t bpf bpf PATH)")
        dev = os.fstat(fd).st_dev
        if expect_dev and dev != expect_dev:
            raise Remounted("bpffs", bpffs_root, 0, f"another bpffs instance is mounted here now (device "
                            f"{os.major(expect_dev)}:{os.minor(expect_dev)} -> {os.major(dev)}:{os.minor(dev)}): "
                            "stopping; start bpffs-sync run again to take it over")
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_sub(bpffs_root: str, parts: tuple[str, ...], create: bool, expect_dev: int = 0) -> int | None:
    """<bpffs>/<parts...>: every level adopted only if root's and writable by nobody else
    (dirfd.owned_dir), made with DIR_MODE when absent and `create`. None when absent and not
    `create`. The caller closes the fd."""
    fd = open_root(bpffs_root, expect_dev)
    try:
        for depth, name in enumerate(parts):
            nxt = dirfd.owned_dir(fd, name, DIR_MODE, os.path.join(bpffs_root, *parts[: depth + 1]), create)
            os.close(fd)
            fd = -1
            if nxt is None:
                return None
            fd = nxt
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    return fd


def open_mirror(layout: Layout, create: bool) -> int | None:
    """The mirror root of layout (`<bpffs>/cgroup`, `<bpffs>/cgroup-v1/<hierarchy>`)."""
    return open_sub(layout.bpffs, layout.mirror_parts, create, layout.bpffs_dev)


# --- file operations, relative to a directory fd ---------------------------------------------------


def mkdir_at(parent_fd: int, name: str, what: str, mode: int = DIR_MODE) -> None:
    """mkdir that accepts dotted names and tolerates an existing directory."""
    try:
        if needs_dot_trick(name):
            old = os.fstat(parent_fd).st_mode & 0o7777
            os.fchmod(parent_fd, 0)
            try:
                os.mkdir(name, mode, dir_fd=parent_fd)
            finally:
                os.fchmod(parent_fd, old)
        else:
            os.mkdir(name, mode, dir_fd=parent_fd)
        if mode & _UMASK:  # exact mode whatever the umask; we just made it, in a directory only root writes
            os.chmod(name, mode, dir_fd=parent_fd)
    except FileExistsError:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if not stat_mod.S_ISDIR(st.st_mode):
            raise SyncError("mkdir", what, errno.EEXIST, "exists and is not a directory") from None
    except OSError as err:
        raise translate_oserror(err, "mkdir", what) from err


def set_access_at(parent_fd: int, name: str, what: str, mode: int, gid: int, *, fresh: bool = False) -> None:
    """chmod + chgrp of `name` (owner root), never through a symlink. `fresh`: we just pinned it in
    a directory only root writes, so plain fchmodat (one syscall; glibc emulates the no-follow
    flavour with three) and no chown when the group is root's already."""
    try:
        if fresh:
            if gid:
                os.chown(name, 0, gid, dir_fd=parent_fd)
            os.chmod(name, mode, dir_fd=parent_fd)
            return
        dirfd.lstat_at(parent_fd, name, what)  # MountPoint: never chmod another filesystem's root
        os.chown(name, 0, gid, dir_fd=parent_fd, follow_symlinks=False)
        os.chmod(name, mode, dir_fd=parent_fd, follow_symlinks=False)
    except ValueError:  # Python refuses fchmodat(AT_SYMLINK_NOFOLLOW) on a symlink
        raise SyncError("chmod", what, errno.ELOOP, "a symlink") from None
    except OSError as err:
        raise translate_oserror(err, "chmod", what) from err


def symlink_at(target: str, parent_fd: int, name: str, what: str) -> None:
    """A symlink `name` -> target (a dotless name: controller names have no dots)."""
    try:
        os.symlink(target, name, dir_fd=parent_fd)
    except FileExistsError:
        try:
            same = os.readlink(name, dir_fd=parent_fd) == target
        except OSError:
            same = False
        if not same:
            raise SyncError("symlink", what, errno.EEXIST, "exists and is not that symlink") from None
    except OSError as err:
        raise translate_oserror(err, "symlink", what) from err


def remove_at(parent_fd: int, name: str, what: str, dev: int = 0) -> bool:
    """Unpin a file, remove a symlink or an (empty) directory. False when it was already gone.
    MountPoint when another filesystem is mounted on it (dev: parent_fd's st_dev when known)."""
    try:
        st = dirfd.lstat_at(parent_fd, name, what, dev)
        if stat_mod.S_ISDIR(st.st_mode):
            os.rmdir(name, dir_fd=parent_fd)
        else:
            os.unlink(name, dir_fd=parent_fd)
    except (FileNotFoundError, PermissionError) as err:
        if isinstance(err, PermissionError) and not needs_dot_trick(name):
            raise translate_oserror(err, "remove", what) from err
        return False  # a dotted name that is not there: bpf_lookup() says EPERM, not ENOENT
    except OSError as err:
        raise translate_oserror(err, "remove", what) from err
    return True


def remove_tree_at(parent_fd: int, name: str, what: str, left: list[str] | None = None,
                   tick: Callable[[], None] | None = None) -> int:
    """Remove `name` and everything below it, post-order, one directory fd per level (no path, no
    symlink followed, no recursion limit, no mount point crossed). Returns the number of entries
    removed. A mount point met is left alone, and so are the directories holding it: its path is
    appended to `left` (None: logged as mount_point_left_alone). tick: called after each entry
    removed (an apply's budget: it raises to end the removal there, the rest left for the next
    pass); interrupt.Interrupted ends it between two entries when the daemon is stopping."""

    def keep(path: str) -> None:
        if left is None:
            _log.warning("mount_point_left_alone", path=path, detail=dirfd.MOUNTED)
        else:
            left.append(path)

    try:
        st = dirfd.lstat_at(parent_fd, name, what)
    except (FileNotFoundError, PermissionError):
        return 0
    except MountPoint:
        keep(what)
        return 0
    except OSError as err:
        raise translate_oserror(err, "remove", what) from err
    if not stat_mod.S_ISDIR(st.st_mode):
        return int(remove_at(parent_fd, name, what))
    try:
        top = dirfd.open_dir(parent_fd, name, what)
    except CgroupGone:
        return 0
    except MountPoint:  # mounted since the lstat
        keep(what)
        return 0
    return _remove_below(top, parent_fd, name, what, keep=keep, tick=tick)


def _remove_below(top: int, parent_fd: int, name: str, what: str, *, keep: Callable[[str], None],
                  tick: Callable[[], None] | None = None) -> int:
    """remove_tree_at's post-order walk from the directory open at top (closed here)."""
    dev = os.fstat(top).st_dev
    removed = 0
    # Each frame: [fd of a directory being emptied, its parent's fd, its name, names still to visit,
    # whether something stays below it (a mount point)]. Paths are built only for a mount point met.
    stack: list[tuple[int, int, str, list[str], list[bool]]] = [(top, parent_fd, name, _names(top, what), [False])]

    def path_of(child: str) -> str:
        return "/".join([what, *(frame[2] for frame in stack[1:]), child])

    try:
        while stack:
            interrupt.check()
            fd, pfd, dname, todo, kept = stack[-1]
            if not todo:
                stack.pop()
                os.close(fd)
                if kept[0]:
                    if stack:
                        stack[-1][4][0] = True
                else:
                    removed += int(remove_at(pfd, dname, what, dev))
                    if tick is not None:
                        tick()
                continue
            child = todo.pop()
            try:
                cst = dirfd.lstat_at(fd, child, what, dev)
            except (FileNotFoundError, PermissionError):
                continue
            except MountPoint:
                keep(path_of(child))
                kept[0] = True
                continue
            if stat_mod.S_ISDIR(cst.st_mode):
                try:
                    cfd = dirfd.open_dir(fd, child, what, dev)
                except CgroupGone:
                    continue
                except MountPoint:
                    keep(path_of(child))
                    kept[0] = True
                    continue
                stack.append((cfd, fd, child, _names(cfd, what), [False]))
            else:
                removed += int(remove_at(fd, child, what, dev))
                if tick is not None:
                    tick()
    finally:
        for fd, *_ in stack:
            os.close(fd)
    return removed


def remove_tree(bpffs_root: str, parts: tuple[str, ...], expect_dev: int = 0, left: list[str] | None = None) -> int:
    """Remove <bpffs>/<parts...> and everything below it. The levels above the last must be ours
    (dirfd.owned_dir): nothing is removed through another user's directory or a symlink; mount
    points below are left alone (remove_tree_at: `left`)."""
    parent = open_sub(bpffs_root, parts[:-1], create=False, expect_dev=expect_dev)
    if parent is None:
        return 0
    what = os.path.join(bpffs_root, *parts)
    try:
        if len(parts) == 1:  # at the shared root: only what is ours (a planted entry is Tampered)
            top = dirfd.owned_dir(parent, parts[0], DIR_MODE, what, create=False)
            if top is None:
                return 0
            os.close(top)
        return remove_tree_at(parent, parts[-1], what, left)
    finally:
        os.close(parent)


def _names(fd: int, what: str) -> list[str]:
    try:
        with os.scandir(fd) as it:
            return [e.name for e in it]
    except OSError as err:
        raise translate_oserror(err, "scandir", what) from err


def _names_dirs_last(fd: int, what: str) -> list[str]:
    """The names in fd, subdirectories first: descend pops from the end, so a directory's files
    (its pins) are visited before any subtree below it (a walk cut by its deadline then leaves only
    directories unread: each is a scope a later pass can take)."""
    try:
        with os.scandir(fd) as it:
            dirs: list[str] = []
            files: list[str] = []
            for e in it:
                (dirs if e.is_dir(follow_symlinks=False) else files).append(e.name)
    except OSError as err:
        raise translate_oserror(err, "scandir", what) from err
    return dirs + files


# --- the actual tree -----------------------------------------------------------------------------


def object_kind(fd: int) -> str:
    """'link', 'prog', 'map' (from the fd's anon-inode name, e.g. anon_inode:bpf-link) or ''."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""
    return target.removeprefix("anon_inode:bpf-") if target.startswith("anon_inode:bpf-") else ""


def describe_pin_at(dir_fd: int, name: str, what: str, judge: ProgJudge) -> tuple[Actual, int]:
    """What the object pinned as `name` is: a SELF_ONLY cgroup iterator link serving some cgroup
    (and its program id), or OTHER. The caller has lstat'ed it: a regular file (no symlink)."""
    try:
        fd = libbpf.obj_get_at(dir_fd, name, what)
    except LibbpfError as err:
        if err.errno not in _DEFINITE:  # EMFILE, ENOMEM, EINTR...: ask again later, judge nothing now
            raise
        return Actual(Kind.OTHER, detail=str(err)), 0
    try:
        if object_kind(fd) != "link":
            return Actual(Kind.OTHER, detail=f"pinned {object_kind(fd) or 'object'}, not a link"), 0
        info = libbpf.link_info(fd, what)
        if info.link_type != libbpf.BPF_LINK_TYPE_ITER or info.order != libbpf.BPF_CGROUP_ITER_SELF_ONLY:
            return Actual(Kind.OTHER, detail=f"link type {info.link_type}, not a SELF_ONLY cgroup iterator"), 0
        return Actual(Kind.PIN, cgroup_id=info.cgroup_id, prog_ok=judge(name, info.prog_id)), info.prog_id
    finally:
        os.close(fd)


# BPF_OBJ_GET errors that say what the file is (gone, not a BPF object, not ours to open), as opposed to
# a transient failure (EMFILE, ENOMEM, EINTR, EAGAIN) that must not turn a healthy pin into drift.
_DEFINITE = (errno.ENOENT, errno.EACCES, errno.EPERM, errno.EINVAL, errno.EOPNOTSUPP)


class PinJudge:
    """The FileJudge of the user-space mirror: describe_pin_at, remembered per pin. A pinned
    iterator link never changes (no BPF_LINK_UPDATE, no detach for iterators), and a pin is one
    inode: (st_dev, st_ino, st_ctime_ns) names it until it is unpinned. So a no-op pass costs an
    lstat per file instead of BPF_OBJ_GET + link info. The program's verdict is asked each time
    (generations change). forget_unseen() after a full pass drops what was not met. Near the
    memory limit (membudget.pressure) nothing is remembered: the memo only saves work."""

    def __init__(self, judge: ProgJudge) -> None:
        self.judge = judge
        self._memo: dict[tuple[int, int, int], tuple[Actual, int]] = {}
        self._seen: set[tuple[int, int, int]] = set()

    def __call__(self, dir_fd: int, name: str, what: str, st: os.stat_result) -> Actual:
        key = (st.st_dev, st.st_ino, st.st_ctime_ns)
        tight = membudget.pressure()
        if tight and self._memo:
            self._memo, self._seen = {}, set()
        found = self._memo.get(key)
        if found is None:
            found = describe_pin_at(dir_fd, name, what, self.judge)
            if not tight:
                self._memo[key] = found
        if not tight:
            self._seen.add(key)
        actual, prog_id = found
        if actual.kind is Kind.PIN and actual.prog_ok != self.judge(name, prog_id):
            actual = Actual(Kind.PIN, cgroup_id=actual.cgroup_id, prog_ok=not actual.prog_ok)
        return actual

    def forget_unseen(self) -> None:
        self._memo = {k: v for k, v in self._memo.items() if k in self._seen}
        self._seen = set()


def describe_at(dir_fd: int, name: str, what: str, judge_file: FileJudge, dev: int = 0) -> Actual | None:
    """The entry `name` below dir_fd as the diff sees it; None when it is not there. dev: dir_fd's
    st_dev when known (an entry on another filesystem is a mount point: Kind.MOUNT)."""
    try:
        st = dirfd.lstat_at(dir_fd, name, what, dev)
    except MountPoint:
        return Actual(Kind.MOUNT, detail=dirfd.MOUNTED)
    except (FileNotFoundError, PermissionError):
        return None  # PermissionError: a dotted name that does not exist (bpf_lookup() says EPERM)
    except OSError as err:
        raise translate_oserror(err, "lstat", what) from err
    if stat_mod.S_ISDIR(st.st_mode):
        return Actual(Kind.DIR, mode=st.st_mode & 0o7777, gid=st.st_gid)
    if stat_mod.S_ISREG(st.st_mode):
        found = judge_file(dir_fd, name, what, st)
        return Actual(found.kind, st.st_mode & 0o7777, st.st_gid, found.cgroup_id, found.prog_ok, found.detail)
    return Actual(Kind.OTHER, detail="a symlink" if stat_mod.S_ISLNK(st.st_mode) else "not a bpffs object")


def walk(layout: Layout, judge_file: FileJudge, scope: RelPath = (), root_fd: int | None = -1, *,
         deadline: float = 0.0) -> ActualView:
    """Actual entries of the mirror subtree at scope, plus the entries on the way down to it.

    One directory fd per level of the current path; a directory that cannot be opened or listed
    (or lies deeper than dirfd.MAX_DEPTH) is opaque: the pass leaves it alone. An entry on another
    filesystem than the mirror root is Kind.MOUNT and never entered. root_fd: the mirror
    root held by the caller, None when it does not exist (default -1: opened and checked here).
    deadline (monotonic, 0: none): past it the walk stops (dirfd.descend); what it did not visit
    is opaque and listed in view.cut, for a later pass to read."""
    view = ActualView()
    if len(scope) >= dirfd.MAX_DEPTH:  # the full pass leaves it opaque: so does a scoped one
        view.opaque.add(scope[: dirfd.MAX_DEPTH])
        return view
    fd = open_mirror(layout, create=False) if root_fd == -1 else None if root_fd is None else os.dup(root_fd)
    if fd is None:
        return view
    try:
        st = os.fstat(fd)
        dev = st.st_dev  # every directory the walk enters is on it (dirfd.open_dir checks)
        view.tree[()] = Actual(Kind.DIR, mode=st.st_mode & 0o7777, gid=st.st_gid)
        for depth in range(len(scope)):  # down to the scope holding one fd at a time
            rel = scope[: depth + 1]
            what = dirfd.where(layout.mirror_root, rel)
            try:
                entry = describe_at(fd, rel[-1], what, judge_file, dev)
            except LibbpfError:  # transient: judged next time
                view.opaque.add(rel)
                return view
            if entry is None:
                return view
            view.tree[rel] = entry
            if entry.kind is not Kind.DIR:
                return view
            try:
                nxt = dirfd.open_dir(fd, rel[-1], what, dev)
            except CgroupGone:
                return view
            except MountPoint:  # mounted since the lstat
                view.tree[rel] = Actual(Kind.MOUNT, detail=dirfd.MOUNTED)
                return view
            except SyncError:  # EMFILE, ...: that subtree is unknown this time, not a failed pass
                view.opaque.add(rel)
                return view
            os.close(fd)
            fd = nxt
        _walk_below(layout, fd, scope, judge_file, view, dev=dev, deadline=deadline)
    finally:
        os.close(fd)
    return view


def _walk_below(layout: Layout, top_fd: int, top: RelPath, judge_file: FileJudge, view: ActualView, *,
                dev: int, deadline: float = 0.0) -> None:
    def children(fd: int, rel: RelPath) -> list[str] | None:
        try:
            return _names_dirs_last(fd, dirfd.where(layout.mirror_root, rel))
        except SyncError:
            view.opaque.add(rel)
            return None

    def enter(fd: int, rel: RelPath, name: str) -> tuple[RelPath, int] | None:
        child = (*rel, name)
        what = dirfd.where(layout.mirror_root, child)
        try:
            entry = describe_at(fd, name, what, judge_file, dev)
        except LibbpfError:  # transient (EMFILE, ENOMEM, EINTR...): this entry is judged next time
            view.opaque.add(child)
            return None
        if entry is None:
            return None
        view.tree[child] = entry
        if entry.kind is not Kind.DIR:
            return None
        if len(child) >= dirfd.MAX_DEPTH:
            view.opaque.add(child)
            return None
        try:
            return child, dirfd.open_dir(fd, name, what, dev)
        except CgroupGone:
            del view.tree[child]
        except MountPoint:  # mounted since the lstat
            view.tree[child] = Actual(Kind.MOUNT, detail=dirfd.MOUNTED)
        except SyncError:
            view.opaque.add(child)
        return None

    def left(rel: RelPath, names: list[str]) -> None:
        for name in names:
            child = (*rel, name)
            view.opaque.add(child)
            view.cut.append(child)

    dirfd.descend(top_fd, top, children, enter, deadline=deadline, left=left)


def count_tree(bpffs_root: str, parts: tuple[str, ...], stats: frozenset[str]) -> dict[str, int]:
    """Directories and stat files (entries named in stats) below <bpffs>/<parts>, counted relative
    to directory fds (dirfd.descend: no symlink followed, no path length or recursion limit, no
    mount point entered). `status` shows it."""
    top = open_sub(bpffs_root, parts, create=False)
    if top is None:
        return {"dirs": 0, "stat_files": 0}
    counts = {"dirs": 1, "stat_files": 0}

    def children(fd: int, rel: tuple[str, ...]) -> list[tuple[str, bool]] | None:
        try:
            with os.scandir(fd) as it:
                return [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        except OSError:
            return None

    def enter(fd: int, rel: tuple[str, ...], entry: tuple[str, bool]) -> tuple[tuple[str, ...], int] | None:
        name, is_dir = entry
        if name in stats:
            counts["stat_files"] += 1
            return None
        if not is_dir or len(rel) >= dirfd.MAX_DEPTH:
            return None
        try:  # never into a mount point: another filesystem's entries are not the mirror's
            child = dirfd.open_dir(fd, name, name)
        except SyncError:
            return None
        counts["dirs"] += 1
        return (*rel, name), child

    try:
        dirfd.descend(top, (), children, enter)
    finally:
        os.close(top)
    return counts
