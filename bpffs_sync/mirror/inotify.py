"""A small inotify(7) binding: three libc calls, the event buffer parsed by hand, one reader thread.

Why our own, not watchdog's (issue 17): the daemon used watchdog's *private* inotify layer
(`inotify_c.InotifyFD`, `CallbackId`, its EACCES -> wd -1 quirk), and private layers change under
their users. watchdog 7.1.1 added `on_events_lost()` to its `WatchCallback` protocol: at the first
queue overflow its reader thread raised AttributeError, closed the InotifyFD, every later
inotify_add_watch failed with EBADF and the daemon's watches dropped to 0 for good (a new cgroup
waited for the periodic pass). The kernel ABI below is stable; a third-party private layer is not.
So this module is the whole contract with the kernel, and it is small enough to test line by line
(tests/test_inotify.py):

- `inotify_init1`, `inotify_add_watch`, `inotify_rm_watch` through ctypes with `use_errno=True`;
  every failure raises OSError with the kernel's errno (no sentinel values: EACCES is an error);
- the buffer read with os.read() is a run of `struct inotify_event {int wd; u32 mask, cookie, len;
  char name[len]}`, name NUL-padded to `len`; names are bytes as the kernel gave them (any byte but
  '/' and NUL, up to NAME_MAX = 255);
- IN_Q_OVERFLOW arrives as an event with wd -1: the caller is told events were lost.

`Reader` is the one thread that reads an instance. Its error boundary is explicit (mirror/supervised.py):
the first exception (in the handler, or from the fd: closed under it, or no longer an inotify
instance) ends the thread and is kept as `failure`, and `on_death` is called once. It never carries on after an
error, so its owner's books cannot silently diverge from the kernel's: a supervisor replaces the
whole instance (mirror/daemon.py).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import struct
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

from bpffs_sync.mirror.supervised import Supervised

# <linux/inotify.h>
IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_CLOSE_NOWRITE = 0x00000010
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_EXCL_UNLINK = 0x04000000
IN_MASK_CREATE = 0x10000000
IN_MASK_ADD = 0x20000000
IN_ISDIR = 0x40000000
IN_ONESHOT = 0x80000000
IN_CLOEXEC = os.O_CLOEXEC
IN_NONBLOCK = os.O_NONBLOCK

_HEADER = struct.Struct("=iIII")  # wd, mask, cookie, len
NAME_MAX = 255
BUFFER = 64 * 1024  # one read: at least 16 + NAME_MAX + 1 bytes, or the kernel says EINVAL

_libc = ctypes.CDLL(None, use_errno=True)
_init1 = _libc.inotify_init1
_init1.argtypes, _init1.restype = [ctypes.c_int], ctypes.c_int
_add = _libc.inotify_add_watch
_add.argtypes, _add.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
_rm = _libc.inotify_rm_watch
_rm.argtypes, _rm.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int


def _raise(what: str, path: bytes | None = None) -> OSError:
    err = ctypes.get_errno()
    if path is None:
        return OSError(err, f"{what}: {os.strerror(err)}")
    return OSError(err, f"{what}: {os.strerror(err)}", os.fsdecode(path))


@dataclass(frozen=True, slots=True)
class Event:
    wd: int  # -1 for IN_Q_OVERFLOW
    mask: int
    cookie: int  # pairs IN_MOVED_FROM with its IN_MOVED_TO
    name: bytes  # b"" for an event on the watched directory itself

    @property
    def is_dir(self) -> bool:
        return bool(self.mask & IN_ISDIR)

    @property
    def overflow(self) -> bool:
        return bool(self.mask & IN_Q_OVERFLOW)


def parse(buf: bytes) -> list[Event]:
    """The events in one read() of an inotify fd. ValueError if buf is not a whole run of
    events (the kernel only returns whole events, so that is not an inotify buffer)."""
    events, off, end = [], 0, len(buf)
    while off < end:
        if end - off < _HEADER.size:
            raise ValueError(f"a truncated inotify event header at offset {off} of {end}")
        wd, mask, cookie, length = _HEADER.unpack_from(buf, off)
        off += _HEADER.size
        if length > end - off:
            raise ValueError(f"an inotify event name of {length} bytes past the end of the buffer")
        name = buf[off:off + length].split(b"\0", 1)[0]
        off += length
        events.append(Event(wd, mask, cookie, name))
    return events


class Inotify:
    """One inotify instance (close-on-exec, non-blocking). Errors raise OSError with errno."""

    def __init__(self) -> None:
        fd = _init1(IN_CLOEXEC | IN_NONBLOCK)
        if fd < 0:
            raise _raise("inotify_init1")
        self._fd: int | None = fd

    def fileno(self) -> int:
        if self._fd is None:
            raise OSError(errno.EBADF, "inotify instance closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    def add_watch(self, path: bytes | str, mask: int) -> int:
        """inotify_add_watch: the watch descriptor (the same one again for an inode already
        watched: it names an inode, not a path)."""
        raw = os.fsencode(path)
        wd = _add(self.fileno(), raw, mask)
        if wd < 0:
            raise _raise("inotify_add_watch", raw)
        return int(wd)

    def rm_watch(self, wd: int) -> None:
        """inotify_rm_watch (EINVAL: wd is not a watch of this instance, e.g. already gone)."""
        if _rm(self.fileno(), wd) < 0:
            raise _raise("inotify_rm_watch")

    def read(self) -> list[Event]:
        """Every event queued now ([] when none: the fd is non-blocking)."""
        try:
            buf = os.read(self.fileno(), BUFFER)
        except BlockingIOError:
            return []
        return parse(buf)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # every mark of the instance goes with it

    def detach(self) -> None:
        """Forget the fd without closing it: it was closed under us, and its number may be another
        file's now (closing it again would close that one)."""
        self._fd = None

    def __enter__(self) -> Inotify:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _is_inotify(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
    except OSError:
        return False


class Reader(Supervised):
    """The thread that reads one Inotify and hands each batch of events to handle().

    Ends on stop(), or at its first failure, which it keeps (`failure`, `error`) and reports
    once through on_death(reason): an exception from handle(), the fd closed under it (POLLNVAL,
    EBADF) or replaced by another file. It wakes at least every `check_every` seconds to check
    that its fd is still the inotify instance it was given, so a death is seen within that.
    After a failure of the fd itself, `lost_fd` is set: the number may name another file by now,
    so the owner must detach() the instance, not close() it."""

    def __init__(self, ino: Inotify, handle: Callable[[list[Event]], None], name: str,
                 on_death: Callable[[str], None] | None = None, check_every: float = 0.25) -> None:
        super().__init__(on_death, "the reader thread ended")
        self._ino = ino
        self._fd = ino.fileno()
        self._handle = handle
        self._check_ms = round(check_every * 1e3)
        self._wake_r, self._wake_w = os.pipe()
        # The fd failed (closed under us, its number maybe another file's now): its owner must not close it.
        self.lost_fd = False
        self._thread: threading.Thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (not the instance: its owner closes it after)."""
        self._stop.set()
        with suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if not self._thread.is_alive():
            for fd in (self._wake_r, self._wake_w):
                with suppress(OSError):
                    os.close(fd)
            self._wake_r = self._wake_w = -1

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        checked = time.monotonic()
        while not self._stop.is_set():
            ready = dict(poller.poll(self._check_ms))
            if self._stop.is_set():
                return
            flags = ready.get(self._fd, 0)
            if time.monotonic() - checked >= self._check_ms / 1e3:  # a number reused by another file
                checked = time.monotonic()
                if not _is_inotify(self._fd):
                    flags |= select.POLLNVAL
            if flags & select.POLLNVAL:
                self.lost_fd = True
                raise OSError(errno.EBADF, f"inotify fd {self._fd} was closed under its reader")
            if flags & (select.POLLERR | select.POLLHUP):
                self.lost_fd = True
                raise OSError(errno.EIO, f"inotify fd {self._fd} reported an error (poll {flags:#x})")
            if flags & select.POLLIN:
                try:
                    events = parse(os.read(self._fd, BUFFER))
                except BlockingIOError:
                    continue
                except OSError as err:
                    self.lost_fd = True
                    if err.errno == errno.EBADF:  # closed between poll and read: the same death as POLLNVAL
                        raise OSError(errno.EBADF, f"inotify fd {self._fd} was closed under its reader") from err
                    raise  # not an inotify fd any more (EISDIR, ...)
                except ValueError:  # a file's bytes, not inotify events
                    self.lost_fd = True
                    raise
                if events:
                    self._handle(events)
