"""Races between link create and rmdir, each forced through a window point of the series.

A plain race would hit these interleavings rarely. With CONFIG_FAULT_INJECTION_DEBUG_FS (on in
config/base.config) the test image carries window points (kernel-approach1/testing/, applied after
the posted series, never posted): writing a window's number to
/sys/kernel/debug/bpf_cgroup_stat/window makes the next task that reaches it sleep window_ms there,
once, and bump window_hits. Each test arms a window, starts the link create in a thread, waits for
the hit (the create is now inside the window) and does the rmdir that races it. No timing is
asserted: where the rmdir waits for a lock the sleeper holds, the test checks, through the kernel
stack, that the create was still in its window when the rmdir began.

- Window 1 (INDEX), v3 review Major 1: link create has indexed the link and not yet checked that
  its root is alive (v3 indexes first, then checks, with no cgroup_mutex; the rmdir hook looks at
  the index after CSS_ONLINE is cleared). v2 checked first, under cgstat_mutex only, so an rmdir
  between the two missed the link: it stayed attached to the removed cgroup (cgroup_id != 0).
- Window 2 (POPULATE), v3 review Major 2: link create made its ancestors' directories and dropped
  cgstat_mutex. An rmdir of a sibling whose link covered the only other file under the parent pruned
  the parent's directory; v2's walk then counted ENOENT as a name collision: nr_files 0, no file,
  and later mkdirs below the link got none either.
- Window 2 again, second v3 review finding 3: the sleeper holds cgstat_walk_mutex, on which every
  bpffs kill_sb waited, even that of an unprivileged user-namespace instance that never held the
  mirror. The umount of such an instance must return long before the window ends (the one timed
  assertion here, a ratio against the window's length).
- Window 2 again, second v3 review finding 7: a mkdir below a name collision while the walk has not
  begun. The mkdir and then the walk both met the collision for the new cgroup, and both counted
  it in nr_errors.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest
import rawbpf
from conftest import link_desc
from test_cgroup_stat import make_tree, mirror_of

DEBUGFS = "/sys/kernel/debug"
KNOBS = os.path.join(DEBUGFS, "bpf_cgroup_stat")
WIN_INDEX = 1
WIN_POPULATE = 2
WINDOW_MS = 3000  # outlasts an rmdir under TCG; only waited for when the rmdir does not wait itself
WINDOW_S = min(WINDOW_MS, 2000) / 1000  # the kernel caps window_ms at 2 s (CGSTAT_WINDOW_MAX_MS)
HIT_TIMEOUT = 120.0


def _write(knob: str, value: int) -> None:
    with open(os.path.join(KNOBS, knob), "w", encoding="ascii") as f:
        f.write(str(value))


def _hits() -> int:
    with open(os.path.join(KNOBS, "window_hits"), encoding="ascii") as f:
        return int(f.read())


@pytest.fixture
def window() -> Iterator[None]:
    """The window knobs (debugfs mounted if needed); disarmed at the end."""
    if not os.path.isdir(KNOBS):
        subprocess.run(["mount", "-t", "debugfs", "debugfs", DEBUGFS], check=False, capture_output=True)
    if not os.path.isdir(KNOBS):
        pytest.skip("kernel without the series' window points (CONFIG_FAULT_INJECTION_DEBUG_FS)")
    _write("window_ms", WINDOW_MS)
    try:
        yield
    finally:
        _write("window", 0)


def load(name: str) -> int:
    fd, _log = rawbpf.prog_load_cgroup_stat(rawbpf.call_helper_prog(rawbpf.BPF_FUNC_get_smp_processor_id), name=name)
    return fd


class Create(threading.Thread):
    """BPF_LINK_CREATE of prog_fd at the cgroup dir, in a thread: fd or the error. Given an fd
    instead of a path (cgroup_fd), the caller owns it and may close it while the create sleeps."""

    def __init__(self, prog_fd: int, cgroup_dir: str | None = None, cgroup_fd: int | None = None) -> None:
        super().__init__(daemon=True)
        self.prog_fd = prog_fd
        self.owned = cgroup_fd is None
        if cgroup_fd is None:
            assert cgroup_dir is not None
            cgroup_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
        self.cgroup_fd = cgroup_fd
        self.fd: int | None = None
        self.error: OSError | None = None
        self.tid = 0

    def run(self) -> None:
        self.tid = threading.get_native_id()
        try:
            self.fd = rawbpf.link_create_cgroup_stat(self.prog_fd, self.cgroup_fd)
        except OSError as err:
            self.error = err
        finally:
            if self.owned:
                os.close(self.cgroup_fd)


def create_in_window(win: int, prog_fd: int, cgroup_dir: str | None = None, cgroup_fd: int | None = None) -> Create:
    """Start a link create (at the directory, or the caller's fd) and return once it sleeps in
    window win."""
    before = _hits()
    _write("window", win)
    create = Create(prog_fd, cgroup_dir, cgroup_fd)
    create.start()
    deadline = time.monotonic() + HIT_TIMEOUT
    while _hits() == before:
        assert create.is_alive(), f"link create returned without reaching window {win}: {create.error!r}"
        assert time.monotonic() < deadline, f"window {win} not reached"
        time.sleep(0.01)
    return create


def nr_dying_descendants(fd: int) -> int:
    """cgroup.stat's nr_dying_descendants, read through an fd opened before (no path lookup)."""
    for line in os.pread(fd, 4096, 0).decode().splitlines():
        key, _, value = line.partition(" ")
        if key == "nr_dying_descendants":
            return int(value)
    raise AssertionError("cgroup.stat has no nr_dying_descendants")


def in_window(tid: int) -> bool:
    """Whether the thread sleeps in a window point: its kernel stack is msleep() in link create (the
    window point itself is inlined)."""
    with open(f"/proc/self/task/{tid}/stack", encoding="ascii") as f:
        stack = f.read()
    return "msleep" in stack and "bpf_cgroup_stat_link_attach" in stack


def rmdir_during(create: Create, root: str, parent_stat_fd: int) -> threading.Thread:
    """rmdir root in a thread while create sleeps in its window; returns once the rmdir has cleared
    CSS_ONLINE (nr_dying_descendants of the parent went up), asserting create still sleeps."""
    before = nr_dying_descendants(parent_stat_fd)
    rmdir = threading.Thread(target=os.rmdir, args=(root,), daemon=True)
    rmdir.start()
    deadline = time.monotonic() + HIT_TIMEOUT
    while nr_dying_descendants(parent_stat_fd) == before:
        assert time.monotonic() < deadline, "rmdir never began"
        time.sleep(0.005)
    assert in_window(create.tid), "window too short: link create left it before the rmdir began"
    return rmdir


def test_rmdir_of_the_root_while_link_create_indexes(window: None, mirror_fs: str, cg: str,
                                                     link_fds: list[int]) -> None:
    """An rmdir of the link's root that begins while link create sleeps between indexing the link
    and its liveness check (holding cgstat_mutex, which the rmdir hook then waits for): the create
    sees the root dead, takes the link off the index again and fails with ENOENT; no link of its
    program is left, attached or not. Forces the undo branch patch 8 adds."""
    make_tree(cg, "root")
    root = os.path.join(cg, "root")
    name = "win_index"
    prog_fd = load(name)
    stat_fd = os.open(os.path.join(cg, "cgroup.stat"), os.O_RDONLY)
    try:
        create = create_in_window(WIN_INDEX, prog_fd, root)
        rmdir = rmdir_during(create, root, stat_fd)
        create.join()
        rmdir.join(HIT_TIMEOUT)
    finally:
        os.close(stat_fd)
        os.close(prog_fd)
    if create.fd is not None:
        link_fds.append(create.fd)
    assert create.error is not None and create.error.errno == errno.ENOENT, (create.fd, create.error)
    assert not rmdir.is_alive() and not os.path.exists(root)
    assert not os.path.exists(mirror_of(mirror_fs, root))


def test_rmdir_of_the_root_after_the_check(window: None, mirror_fs: str, cg: str,
                                           link_fds: list[int]) -> None:
    """The other branch: the rmdir begins after link create checked its root and dropped
    cgstat_mutex (window 2). The rmdir hook finds the link on the index and detaches it; the create
    returns the link, detached (cgroup_id 0), with no file."""
    make_tree(cg, "root")
    root = os.path.join(cg, "root")
    prog_fd = load("win_after")
    stat_fd = os.open(os.path.join(cg, "cgroup.stat"), os.O_RDONLY)
    try:
        create = create_in_window(WIN_POPULATE, prog_fd, root)
        rmdir = rmdir_during(create, root, stat_fd)
        rmdir.join(HIT_TIMEOUT)
        assert not rmdir.is_alive(), "the rmdir waits for the create's walk"
        create.join()
    finally:
        os.close(stat_fd)
        os.close(prog_fd)
    assert create.fd is not None, create.error
    link_fds.append(create.fd)
    desc = link_desc(create.fd)
    assert desc.cgroup_id == 0, f"link {desc.link_id} still attached to the removed cgroup {desc.cgroup_id}"
    assert desc.nr_files == 0
    assert not os.path.exists(mirror_of(mirror_fs, root))


def test_rmdir_pruning_the_parent_during_populate(window: None, mirror_fs: str, cg: str,
                                                  link_fds: list[int]) -> None:
    """Link L3 at a/c, the only file under a/; L2 created at a/b sleeps after making its ancestors'
    directories; rmdir a/c detaches L3 and prunes a/. L2 still gets a file in a/b and each cgroup below,
    nr_files says so, and a later mkdir below a/b gets its file too."""
    make_tree(cg, "a/c", "a/b/x/y", "a/b/z")
    l3_fd = load("win_l3")
    l2_fd = load("win_l2")
    try:
        c_fd = os.open(os.path.join(cg, "a", "c"), os.O_RDONLY | os.O_DIRECTORY)
        try:
            link_fds.append(rawbpf.link_create_cgroup_stat(l3_fd, c_fd))
        finally:
            os.close(c_fd)
        a_dir = mirror_of(mirror_fs, os.path.join(cg, "a"))
        assert os.listdir(a_dir) == ["c"]
        create = create_in_window(WIN_POPULATE, l2_fd, os.path.join(cg, "a", "b"))
        os.rmdir(os.path.join(cg, "a", "c"))
        create.join()
    finally:
        os.close(l3_fd)
        os.close(l2_fd)
    assert create.error is None, f"link create failed: {create.error!r}"
    assert create.fd is not None
    link_fds.append(create.fd)
    assert link_desc(link_fds[0]).cgroup_id == 0  # L3 went with its root
    b = os.path.join(cg, "a", "b")
    want = {".", "x", "x/y", "z"}
    have = {rel for rel in want if os.path.exists(os.path.join(mirror_of(mirror_fs, os.path.join(b, rel)), "win_l2"))}
    desc = link_desc(create.fd)
    assert (have, desc.nr_files, desc.nr_errors) == (want, len(want), 0)
    os.mkdir(os.path.join(b, "z", "later"))
    assert os.path.exists(os.path.join(mirror_of(mirror_fs, os.path.join(b, "z", "later")), "win_l2"))
    assert link_desc(create.fd).nr_files == len(want) + 1


_libc = ctypes.CDLL(None, use_errno=True)


def _libc_check(ret: int, what: str) -> None:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


class OtherBpffs:
    """A bpffs instance that never holds the mirror: root's plain `mount -t bpf none dir` (a
    container runtime's, say). Not a user namespace's own mount: bpf_fill_super() wants
    CAP_SYS_ADMIN in the initial namespace to make an instance, whoever's namespace it is for."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cgstat-other-bpffs.")
        try:
            _libc_check(_libc.mount(b"none", self.dir.encode(), b"bpf", 0, None), "mount bpf")
        except BaseException:
            os.rmdir(self.dir)
            raise
        self.mounted = True

    def umount_seconds(self) -> float:
        """umount(2) of the instance, its last reference (kill_sb runs before it returns): seconds."""
        start = time.monotonic()
        _libc_check(_libc.umount2(self.dir.encode(), 0), "umount")
        self.mounted = False
        return time.monotonic() - start

    def close(self) -> None:
        if self.mounted:
            _libc.umount2(self.dir.encode(), 2)  # MNT_DETACH
        with contextlib.suppress(OSError):
            os.rmdir(self.dir)


def test_unrelated_umount_does_not_wait_for_a_walk(window: None, mirror_fs: str, cg: str,
                                                   link_fds: list[int]) -> None:
    """Second v3 review, finding 3: link create sleeps in window 2 holding cgstat_walk_mutex; the
    umount of another bpffs instance, one that never held the mirror, returns long before the window ends
    (it took about the rest of the window when every kill_sb took cgstat_walk_mutex), and link
    create still succeeds with its files."""
    make_tree(cg, "root/x")
    other = OtherBpffs()
    try:
        prog_fd = load("win_umount")
        try:
            create = create_in_window(WIN_POPULATE, prog_fd, os.path.join(cg, "root"))
            hit = time.monotonic()
            took = other.umount_seconds()
            returned = time.monotonic() - hit
            create.join()
        finally:
            os.close(prog_fd)
    finally:
        other.close()
    assert create.error is None, f"link create failed: {create.error!r}"
    assert create.fd is not None
    link_fds.append(create.fd)
    assert took < WINDOW_S / 4, (f"umount of an unrelated bpffs took {took:.3f} s with a {WINDOW_S:.1f} s "
                                 "walk window open: it waited for the walk")
    # the umount ran while link create slept in the window, or nothing was forced
    assert returned < WINDOW_S, f"the umount returned {returned:.3f} s after the window opened: not inside it"
    want = {".", "x"}
    root = os.path.join(cg, "root")
    have = {rel for rel in want
            if os.path.exists(os.path.join(mirror_of(mirror_fs, os.path.join(root, rel)), "win_umount"))}
    assert (have, link_desc(create.fd).nr_files) == (want, len(want))


def test_collision_made_during_populate_counted_once(window: None, mirror_fs: str, cg: str,
                                                     link_fds: list[int]) -> None:
    """Second v3 review, finding 7: link "x" at r, where r has a child cgroup named x; mkdir r/x/y while
    link create sleeps in window 2, before its walk begins. The mkdir adds the path from the root:
    r's file x, then r/x collides with it. The walk counts the collisions at r/x and r/x/y; the
    mkdir no longer counts r/x/y as well: nr_errors is 2, not 3."""
    make_tree(cg, "r/x")
    prog_fd = load("x")
    r = os.path.join(cg, "r")
    try:
        create = create_in_window(WIN_POPULATE, prog_fd, r)
        os.mkdir(os.path.join(r, "x", "y"))
        assert create.is_alive(), "link create left the window before the mkdir: nothing was forced"
        create.join()
    finally:
        os.close(prog_fd)
    assert create.error is None, f"link create failed: {create.error!r}"
    assert create.fd is not None
    link_fds.append(create.fd)
    r_dir = mirror_of(mirror_fs, r)
    assert os.path.isfile(os.path.join(r_dir, "x")), os.listdir(r_dir)  # the link's file won at r
    desc = link_desc(create.fd)
    assert (desc.nr_files, desc.nr_errors) == (1, 2)
