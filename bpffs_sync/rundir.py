"""The run directory: where a daemon's lock and telemetry live, and whether a daemon runs.

    <run dir>/bpffs-<major>:<minor>.lock   flock(LOCK_EX), held by `bpffs-sync run` for its whole life (and
                                           by `clean` while it works); content "<pid> <starttime> <role>"
    <run dir>/bpffs-<major>:<minor>.json   telemetry the daemon rewrites after each pass (`status` shows it)

The run directory is /run/bpffs-sync, or $BPFFS_SYNC_RUN_DIR (tests and benchmarks use their own). It
must be a real directory owned by us and writable by nobody else: its files decide who may act.

Keyed by the bpffs *superblock* (st_dev of the mount root, the major:minor of /proc/self/mountinfo),
not by the path: a bind mount of the same bpffs reaches the same lock, and so one daemon per bpffs
instance however it is reached. (That --bpffs is the root of a whole bpffs is preflight's job.)

Liveness: the lock is the truth. A daemon runs iff someone holds the flock; /proc/locks names the
holder's pid without our taking the lock (so asking never makes a starting daemon fail). The pid and
start time (field 22 of /proc/<pid>/stat) the holder wrote into the lock file tell which program it
is; a pid in a status file alone proves nothing (pids are reused). `signal_holder` opens a pidfd on
the holder and checks the lock is still its before signalling through the pidfd, so a signal never
reaches a process that merely reuses the pid.

Across PID namespaces (the exporter's container, `unshare --pid`) /proc/locks hides the holder. So the
holder also takes an OFD write lock (fcntl F_OFD_SETLK) on the same open file: `published` tests it
with F_OFD_GETLK, which takes nothing (a starting daemon never finds the lock busy because someone
asked) and sees a holder in any namespace; the telemetry it returns is the one whose pid and start
time are those the holder wrote into the lock file (compared as written, never looked up in /proc).
Reading needs no capability: a run directory owned by root is trusted by a non-root reader.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import stat as stat_mod
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bpffs_sync.errors import EnvironmentProblem

RUN_DIR_ENV = "BPFFS_SYNC_RUN_DIR"
DEFAULT_RUN_DIR = "/run/bpffs-sync"
PROC_LOCKS = "/proc/locks"
ROLE_RUN = "run"
ROLE_CLEAN = "clean"


def run_dir() -> str:
    """The run directory in force now ($BPFFS_SYNC_RUN_DIR, else /run/bpffs-sync)."""
    return os.path.normpath(os.environ.get(RUN_DIR_ENV) or DEFAULT_RUN_DIR)  # no trailing `/`: O_NOFOLLOW holds


def superblock_key(bpffs_root: str) -> str:
    """`bpffs-<major>:<minor>` of the filesystem at bpffs_root: the same for every mount of one bpffs."""
    try:
        dev = os.stat(bpffs_root).st_dev
    except OSError as err:
        raise EnvironmentProblem("bpffs", bpffs_root, err.errno or 0) from err
    return f"bpffs-{os.major(dev)}:{os.minor(dev)}"


@dataclass(frozen=True, slots=True)
class RunFiles:
    """The files of one bpffs instance in one run directory."""

    directory: str
    key: str

    @property
    def lock_name(self) -> str:
        return self.key + ".lock"

    @property
    def telemetry_name(self) -> str:
        return self.key + ".json"

    @property
    def lock_path(self) -> str:
        return os.path.join(self.directory, self.lock_name)

    @property
    def telemetry_path(self) -> str:
        return os.path.join(self.directory, self.telemetry_name)


def files_for(bpffs_root: str, directory: str | None = None) -> RunFiles:
    return RunFiles(directory or run_dir(), superblock_key(bpffs_root))


def telemetry_path(bpffs_root: str, directory: str | None = None) -> str:
    """Where the daemon for this bpffs writes its telemetry."""
    return files_for(bpffs_root, directory).telemetry_path


# --- the directory itself ------------------------------------------------------------------------


def _open_dir(path: str, create: bool, owners: tuple[int, ...] = ()) -> int | None:
    """A directory fd on the run directory, checked: a real directory (not a symlink),
    owned by us (or one of `owners`: a reader trusts root's), not writable by group or others.
    None when it is absent and create is False."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o755)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        if create:
            raise EnvironmentProblem("run directory", path, errno.ENOENT) from None
        return None
    except OSError as err:
        detail = "a symlink or not a directory" if err.errno in (errno.ELOOP, errno.ENOTDIR) else ""
        raise EnvironmentProblem("run directory", path, err.errno or 0, detail) from err
    st = os.fstat(fd)
    if st.st_uid not in (os.geteuid(), *owners) or st.st_mode & 0o022:
        os.close(fd)
        raise EnvironmentProblem("run directory", path, 0,
                                 f"owned by uid {st.st_uid}, mode {stat_mod.S_IMODE(st.st_mode):04o}: must be ours "
                                 "and writable by nobody else")
    return fd


# --- who holds the lock --------------------------------------------------------------------------


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot): with the pid, one process forever."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    return parse_start_time(text)


def parse_start_time(text: bytes) -> int | None:
    """starttime from a /proc/<pid>/stat line; comm (field 2) may hold spaces and parentheses."""
    _, sep, rest = text.rpartition(b")")
    fields = rest.split()
    if not sep or len(fields) < 20:
        return None
    try:
        return int(fields[19])  # fields[0] is field 3 (state)
    except ValueError:
        return None


def parse_lock_holders(text: str, dev: int, ino: int) -> list[int]:
    """Pids holding a FLOCK on the file (dev, ino) per /proc/locks (blocked waiters, `->`, excluded).

        1: FLOCK  ADVISORY  WRITE 3175 fe:00:1450188 0 EOF
    """
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    pids = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->" or fields[1] != "FLOCK":
            continue
        if fields[5] == want:
            try:
                pids.append(int(fields[4]))
            except ValueError:
                continue
    return pids


@dataclass(frozen=True, slots=True)
class Holder:
    """The process holding a bpffs's lock. verified: the lock file's pid and start time are its own
    (so role is what that process said it is); else it is some other holder (e.g. flock(1))."""

    pid: int
    start_time: int | None
    role: str
    verified: bool

    def describe(self) -> str:
        return f"bpffs-sync {self.role} (pid {self.pid})" if self.verified else f"pid {self.pid}"


def _holder_at(dir_fd: int, files: RunFiles) -> Holder | None:
    try:
        fd = os.open(files.lock_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    try:
        st = os.fstat(fd)
        content = os.pread(fd, 128, 0).decode(errors="replace").split()
    finally:
        os.close(fd)
    with open(PROC_LOCKS, encoding="ascii", errors="replace") as f:
        pids = parse_lock_holders(f.read(), st.st_dev, st.st_ino)
    if not pids:
        return None
    pid = pids[0]
    started = start_time(pid)
    verified = (len(content) >= 3 and content[0] == str(pid) and started is not None
                and content[1] == str(started))
    return Holder(pid, started, content[2] if verified else "?", verified)


def holder(bpffs_root: str, directory: str | None = None) -> Holder | None:
    """Who holds this bpffs's lock now; None when nobody does (no daemon runs on it)."""
    files = files_for(bpffs_root, directory)
    dir_fd = _open_dir(files.directory, create=False)
    if dir_fd is None:
        return None
    try:
        return _holder_at(dir_fd, files)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def exclusive(bpffs_root: str, role: str, directory: str | None = None) -> Iterator[RunFiles]:
    """Hold this bpffs's lock for the block (`run` for its life, `clean` while it removes).
    EnvironmentProblem, naming the holder, when another process holds it."""
    files = files_for(bpffs_root, directory)
    dir_fd = _open_dir(files.directory, create=True)
    assert dir_fd is not None
    try:
        fd = os.open(files.lock_name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    except OSError as err:
        os.close(dir_fd)
        raise EnvironmentProblem("lock", files.lock_path, err.errno or 0) from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _holder_at(dir_fd, files)
            who = other.describe() if other is not None else "another process"
            raise EnvironmentProblem(role, bpffs_root, 0, f"{who} holds this bpffs") from None
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_WRLCK))  # for `published` (no one else takes it)
        except OSError as err:
            raise EnvironmentProblem("lock", files.lock_path, err.errno or 0, "cannot take its OFD lock") from err
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {start_time(os.getpid())} {role}\n".encode(), 0)
        yield files
    finally:
        os.close(fd)
        os.close(dir_fd)


# --- what the holder publishes, seen from any PID namespace --------------------------------------

_FLOCK = struct.Struct("@hhqqi4x")  # struct flock on 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid


def _flock(kind: int) -> bytes:
    return _FLOCK.pack(kind, os.SEEK_SET, 0, 0, 0)  # the whole file


def lock_held(fd: int) -> bool:
    """Does anyone hold the OFD write lock on fd's file (F_OFD_GETLK: tests, takes nothing)?"""
    kind = _FLOCK.unpack(fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _flock(fcntl.F_RDLCK)))[0]
    return bool(kind != fcntl.F_UNLCK)


@dataclass(frozen=True, slots=True)
class Published:
    """The lock of one bpffs as any reader sees it. held: someone holds it now; role: what the lock
    file says (run, clean); since: when the lock file was last written (the holder's start);
    telemetry: the document the writer of the lock file wrote, else None."""

    held: bool
    role: str
    since: float
    telemetry: dict[str, Any] | None


def published(bpffs_root: str, directory: str | None = None) -> Published | None:
    """The lock and telemetry of this bpffs; None when there is no run directory or lock file."""
    files = files_for(bpffs_root, directory)
    dir_fd = _open_dir(files.directory, create=False, owners=(0,))
    if dir_fd is None:
        return None
    try:
        try:
            fd = os.open(files.lock_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        try:
            held = lock_held(fd)
            since = os.fstat(fd).st_mtime
            content = os.pread(fd, 128, 0).decode(errors="replace").split()
        finally:
            os.close(fd)
        doc = _read_json_at(dir_fd, files.telemetry_name)
    finally:
        os.close(dir_fd)
    if len(content) < 3:
        return Published(held, "?", since, None)
    if doc is not None and [str(doc.get("pid")), str(doc.get("start_time"))] != content[:2]:
        doc = None
    return Published(held, content[2], since, doc)


def _read_json_at(dir_fd: int, name: str) -> dict[str, Any] | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        with open(fd, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# --- telemetry -----------------------------------------------------------------------------------


def write_telemetry(files: RunFiles, doc: dict[str, Any]) -> None:
    """Replace the telemetry file atomically (a reader sees the old or the new document)."""
    dir_fd = _open_dir(files.directory, create=True)
    assert dir_fd is not None
    tmp = f"{files.telemetry_name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                     dir_fd=dir_fd)
        with open(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, files.telemetry_name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


def read_telemetry(bpffs_root: str, who: Holder, directory: str | None = None) -> dict[str, Any] | None:
    """The telemetry the lock holder wrote; None when the file is absent, unreadable or someone
    else's (a stale file of an earlier daemon, whose pid may now be anyone's)."""
    files = files_for(bpffs_root, directory)
    dir_fd = _open_dir(files.directory, create=False)
    if dir_fd is None:
        return None
    try:
        fd = os.open(files.telemetry_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        with open(fd, encoding="utf-8") as f:
            doc: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        return None
    finally:
        os.close(dir_fd)
    if doc.get("pid") != who.pid or doc.get("start_time") != who.start_time:
        return None
    return doc


# --- signalling the holder -----------------------------------------------------------------------


def signal_holder(bpffs_root: str, expected: Holder, sig: int = signal.SIGTERM,
                  directory: str | None = None) -> bool:
    """Send sig to `expected` if, and only if, it still holds this bpffs's lock; True when sent.

    A pidfd pins the process: after opening it we check again that the lock is held by that pid
    with the same start time, then signal through the pidfd, so a process that merely reuses the
    pid (the holder exited meanwhile) is never signalled."""
    try:
        pidfd = os.pidfd_open(expected.pid)
    except ProcessLookupError:
        return False
    try:
        now = holder(bpffs_root, directory)
        if now is None or now.pid != expected.pid or now.start_time != expected.start_time:
            return False
        try:
            signal.pidfd_send_signal(pidfd, sig)
        except ProcessLookupError:
            return False
    finally:
        os.close(pidfd)
    return True
