"""Major 5 of the v2 review: bpffs directory locks under cgroup_mutex. A covered mkdir makes its
entries in the parent's mirror directory, holding that directory's i_rwsem exclusively; until v3's
patch 8 it did so inside cgroup_mkdir(), under cgroup_mutex, and rmdir removed them there too. A
user who holds a mirror directory's lock for long then stalled every cgroup_mutex user on the host.

Two ways to hold it, both forced here with a getdents64() whose buffer page is missing in a
userfaultfd range (the copy to user memory sleeps, holding the directory's lock shared, until the
page is supplied; an unprivileged user gets the same with a buffer mapped from a FUSE file whose
server does not answer):
- a getdents64() of the mirror directory itself (root here; 0551 keeps other users from opening a
  mirror directory for reading: test_nobody_cannot_list_...);
- nobody's rename(2) from a mirror directory into another bpffs directory whose lock a stalled
  getdents64() holds: lock_rename() takes the mirror directory exclusively, then waits.

What each test asserts, failing before patch 8: while the lock is held, the covered mkdir sleeps
(the mirror's own operation waits) but a mkdir elsewhere in the hierarchy completes (cgroup_mutex
is free); once the page is supplied, everything finishes and the covered cgroup has its file. No
duration is asserted."""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import struct
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from test_cgroup_stat import NAME, make_tree, mirror_of
from test_permissions import NOBODY, as_nobody

from bpffs_sync.backends import kernel_a1
from bpffs_sync.sandbox import make_cgroup_root, remove_cgroup_tree

NR_USERFAULTFD = 323
NR_GETDENTS64 = 217
UFFD_API = 0xAA
UFFDIO_API = 0xC018AA3F
UFFDIO_REGISTER = 0xC020AA00
UFFDIO_ZEROPAGE = 0xC020AA04
UFFDIO_REGISTER_MODE_MISSING = 1
UFFD_EVENT_PAGEFAULT = 0x12

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def _ioctl(fd: int, req: int, buf: ctypes.Array[ctypes.c_char]) -> None:
    if _libc.ioctl(fd, req, buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class MissingPage:
    """One anonymous page registered with a userfaultfd: the first touch sleeps until supply()."""

    def __init__(self) -> None:
        fd = int(_libc.syscall(NR_USERFAULTFD, os.O_CLOEXEC))
        if fd < 0:
            pytest.fail(f"userfaultfd: {os.strerror(ctypes.get_errno())}: the guest kernel needs CONFIG_USERFAULTFD "
                        "(kernel-approach1/config/base.config sets it)")
        self.fd = fd
        api = ctypes.create_string_buffer(struct.pack("QQQ", UFFD_API, 0, 0), 24)
        _ioctl(fd, UFFDIO_API, api)
        self.size = mmap.PAGESIZE
        self.supplied = False
        addr = _libc.mmap(None, self.size, mmap.PROT_READ | mmap.PROT_WRITE,
                          mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value)
        self.addr: int = addr
        reg = ctypes.create_string_buffer(struct.pack("QQQQ", addr, self.size, UFFDIO_REGISTER_MODE_MISSING, 0), 32)
        _ioctl(fd, UFFDIO_REGISTER, reg)

    def wait_fault(self) -> None:
        msg = os.read(self.fd, 32)
        assert msg[0] == UFFD_EVENT_PAGEFAULT, msg

    def supply(self) -> None:
        zp = ctypes.create_string_buffer(struct.pack("QQQq", self.addr, self.size, 0, 0), 32)
        _ioctl(self.fd, UFFDIO_ZEROPAGE, zp)
        self.supplied = True

    def supply_quietly(self) -> None:
        """supply() unless done (a cleanup path: the page must not stay missing)."""
        if not self.supplied:
            with contextlib.suppress(OSError):
                self.supply()

    def close(self) -> None:
        _libc.munmap(self.addr, self.size)
        os.close(self.fd)


def task_state(tid: int) -> str:
    with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


class Op(threading.Thread):
    def __init__(self, fn: object, *args: object) -> None:
        super().__init__(daemon=True)
        self.fn, self.args = fn, args
        self.tid = 0
        self.started_at = self.ended_at = 0.0
        self.result: object = None
        self.ready = threading.Event()

    def run(self) -> None:
        self.tid = threading.get_native_id()
        self.ready.set()
        self.started_at = time.monotonic()
        try:
            self.result = self.fn(*self.args)  # type: ignore[operator]
        except OSError as err:
            self.result = err
        self.ended_at = time.monotonic()


def wait_asleep(op: Op, what: str) -> None:
    op.ready.wait(10)
    for _ in range(2000):  # 20 s at most: each pass either sees D or sleeps 10 ms
        if not op.is_alive():
            pytest.fail(f"{what} finished while the reader held the directory lock: {op.result!r}")
        if task_state(op.tid) == "D":
            return
        time.sleep(0.01)
    pytest.fail(f"{what} never slept (state {task_state(op.tid)})")


@pytest.fixture
def elsewhere() -> Iterator[str]:
    path = make_cgroup_root("cgstat-elsewhere")
    try:
        yield path
    finally:
        remove_cgroup_tree(path)


def test_a_reader_holding_a_mirror_directory_stalls_only_the_covered_mkdir(
        stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, elsewhere: str, link_fds: list[int]) -> None:
    make_tree(cg, "a")
    link_fds.append(stat.attach(cg))
    page = MissingPage()
    dir_fd = os.open(mirror_of(mirror_fs, os.path.join(cg, "a")), os.O_RDONLY | os.O_DIRECTORY)
    covered: Op | None = None
    try:
        reader = Op(lambda: int(_libc.syscall(NR_GETDENTS64, dir_fd, ctypes.c_void_p(page.addr), page.size)))
        reader.start()
        page.wait_fault()  # the reader sleeps in the copy, holding cg/a's mirror directory shared
        covered = Op(os.mkdir, os.path.join(cg, "a", "new"))
        covered.start()
        wait_asleep(covered, "a mkdir under the held directory")
        assert_cgroup_mutex_free(elsewhere)
        assert task_state(covered.tid) == "D"
        page.supply()
        for op in (reader, covered):
            op.join(30)
            assert not op.is_alive()
        assert isinstance(reader.result, int) and reader.result > 0, reader.result
        assert covered.result is None, covered.result
        assert os.path.isfile(os.path.join(mirror_of(mirror_fs, os.path.join(cg, "a", "new")), NAME))
    finally:
        page.supply_quietly()
        if covered is not None:
            covered.join(30)
        os.close(dir_fd)
        page.close()


def assert_cgroup_mutex_free(elsewhere: str) -> None:
    """A mkdir and an rmdir no link covers complete (they need cgroup_mutex, nothing of the mirror)."""
    path = os.path.join(elsewhere, "other")
    for op in (Op(os.mkdir, path), Op(os.rmdir, path)):
        op.start()
        op.join(20)
        assert not op.is_alive(), "a mkdir or rmdir elsewhere waits: cgroup_mutex is held behind the bpffs lock"
        assert op.result is None, op.result


def test_nobody_cannot_list_a_mirror_directory_but_reads_its_file(
        stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]) -> None:
    """The reader above needs a mirror directory open for reading: an unprivileged user gets
    EACCES on every mirror directory (cgroup/ included) and still reads each file by its path."""
    make_tree(cg, "a")
    link_fds.append(stat.attach(cg))
    mdir = mirror_of(mirror_fs, os.path.join(cg, "a"))
    for d in (os.path.join(mirror_fs, "cgroup"), mirror_of(mirror_fs, cg), mdir):
        res = as_nobody("ls", d)
        assert res.returncode != 0 and "Permission denied" in res.stderr, (d, res)
    res = as_nobody("cat", os.path.join(mdir, NAME))
    assert res.returncode == 0 and res.stdout, res
    res = as_nobody("stat", "-c", "%a", mdir)
    assert res.returncode == 0 and res.stdout.strip() == "551", res


def task_stack(pid: int) -> str:
    """A task's kernel stack and wchan, for a failure message."""
    out = []
    for name in ("stack", "wchan", "syscall"):
        try:
            with open(f"/proc/{pid}/{name}", encoding="ascii") as f:
                out.append(f"{name}: {f.read().strip()}")
        except OSError as err:
            out.append(f"{name}: {err}")
    return "\n".join(out)


RENAME_SYSCALLS = {82, 264, 316}  # x86_64 rename, renameat, renameat2


def asleep_in_rename(pid: int) -> bool:
    """pid sleeps (D) inside a rename syscall: not in exec's or a page fault's short D waits."""
    with open(f"/proc/{pid}/syscall", encoding="ascii") as f:
        nr = f.read().split()[0]
    return nr.isdigit() and int(nr) in RENAME_SYSCALLS and proc_state(pid) == "D"


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_nobodys_rename_from_a_mirror_directory_stalls_only_the_covered_mkdir(
        stat: kernel_a1.KernelMirror, mirror_fs: str, cg: str, elsewhere: str, link_fds: list[int]) -> None:
    """The route 0551 leaves open: nobody renames from a mirror directory into a bpffs directory of
    the same instance whose lock a stalled getdents64() holds. The rename sleeps holding the
    mirror directory's lock, and a covered mkdir waits for it; cgroup_mutex does not."""
    make_tree(cg, "a")
    link_fds.append(stat.attach(cg))
    other = os.path.join(mirror_fs, "cgstat-rename-target")
    os.mkdir(other, 0o755)
    page = MissingPage()
    dir_fd = os.open(other, os.O_RDONLY | os.O_DIRECTORY)
    renamer: subprocess.Popen[bytes] | None = None
    covered: Op | None = None
    try:
        reader = Op(lambda: int(_libc.syscall(NR_GETDENTS64, dir_fd, ctypes.c_void_p(page.addr), page.size)))
        reader.start()
        page.wait_fault()  # the reader sleeps in the copy, holding `other` shared
        src = os.path.join(mirror_of(mirror_fs, os.path.join(cg, "a")), "x")
        renamer = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                                    "perl", "-e", "rename($ARGV[0], $ARGV[1]) or exit 1",
                                    src, os.path.join(other, "y")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120  # the emulated guest starts a process slowly
        while not asleep_in_rename(renamer.pid) and time.monotonic() < deadline:
            assert renamer.poll() is None, "the rename returned: it did not wait for the directory lock"
            time.sleep(0.01)
        assert asleep_in_rename(renamer.pid), task_stack(renamer.pid)
        covered = Op(os.mkdir, os.path.join(cg, "a", "new"))
        covered.start()
        wait_asleep(covered, "a mkdir under the mirror directory the rename holds")
        assert_cgroup_mutex_free(elsewhere)
        page.supply()
        assert renamer.wait(30) != 0  # the rename itself fails: nothing to rename, nor the right
        covered.join(30)
        assert not covered.is_alive() and covered.result is None, covered.result
        assert os.path.isfile(os.path.join(mirror_of(mirror_fs, os.path.join(cg, "a", "new")), NAME))
    finally:
        page.supply_quietly()
        if renamer is not None:
            renamer.wait(30)
        if covered is not None:
            covered.join(30)
        os.close(dir_fd)
        page.close()
        os.rmdir(other)
