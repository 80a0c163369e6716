"""Fixtures only tests use, out of the agent's package: a cgroup churn thread (the race partner of
tree walks: tests/test_cgtree.py, the kernel series' walk tests), a flat tree, a call on a thread and
the create/detach race driver for the walk tests of both series, and the kernel series' stats loaded
once per test session (kernel-approach1/2 guest suites: LoadedStats). The guest suites' conftest.py
put this directory on sys.path to import it."""

from __future__ import annotations

import errno
import os
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from bpffs_sync import libbpf
from bpffs_sync.backends.statlink import StatLink
from bpffs_sync.errors import LibbpfError
from bpffs_sync.paths import Layout
from bpffs_sync.programs import StatProgram

S = TypeVar("S", bound=StatLink)


def make_flat(tree: str, n: int) -> None:
    """tree and n children c0..c<n-1>: a walk of many steps."""
    os.mkdir(tree)
    for i in range(n):
        os.mkdir(os.path.join(tree, f"c{i}"))


def in_thread(fn: Callable[[], int]) -> tuple[threading.Thread, dict[str, object]]:
    """fn() (a link create) on a thread; out gets "t0" and "t1" (monotonic, just before and after)
    and "fd" or "error"."""
    out: dict[str, object] = {}

    def body() -> None:
        out["t0"] = time.monotonic()
        try:
            out["fd"] = fn()
        except BaseException as err:
            out["error"] = err
        out["t1"] = time.monotonic()

    t = threading.Thread(target=body)
    t.start()
    return t, out


def joined_fd(t: threading.Thread, out: dict[str, object]) -> int:
    """The fd in_thread's call returned, once it has; AssertionError if it raised."""
    t.join()
    if "error" in out:
        raise AssertionError(f"link create failed: {out['error']!r}")
    fd = out["fd"]
    assert isinstance(fd, int)
    return fd


class CgroupChurn:
    """mkdir and rmdir of nested cgroups at random places under a tree, on a thread, until stopped: the
    race partner of the kernel series' walk tests. `during` counts the ops made while the block ran."""

    def __init__(self, tree: str, seed: int) -> None:
        self.tree = tree
        self.seed = seed
        self.rng = random.Random(seed)
        self.live: list[str] = []
        self.ops = 0
        self.during = 0  # ops between __enter__ returning and __exit__
        self.stop = threading.Event()
        self.running = threading.Event()
        self.error: OSError | None = None
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            self._churn()
        except OSError as err:
            self.error = err
            self.running.set()

    def _churn(self) -> None:
        n = 0
        while not self.stop.is_set():
            if self.live and self.rng.random() < 0.45:
                path = self.live.pop(self.rng.randrange(len(self.live)))
                try:
                    os.rmdir(path)
                except OSError as err:
                    if err.errno != errno.EBUSY:  # it has children: try later
                        raise
                    self.live.append(path)
                    continue
            else:
                parent = self.rng.choice([self.tree, *self.live[-50:]])
                path = os.path.join(parent, f"s{self.seed}n{n}")  # unique across churns of a tree
                n += 1
                os.mkdir(path)
                self.live.append(path)
            self.ops += 1
            self.running.set()

    def __enter__(self) -> CgroupChurn:
        """Returns once the thread is mkdir-ing and rmdir-ing (the race needs it running)."""
        self.thread.start()
        self.running.wait(timeout=30)
        self.during = -self.ops
        return self

    def __exit__(self, *exc: object) -> None:
        self.during += self.ops  # racy by a few ops at most: only > 0 is asserted
        self.stop.set()
        self.thread.join()
        if self.error is not None:
            raise AssertionError(f"the churn thread failed: {self.error!r}")


def race_create_and_detach(tree: str, seed: int, attempts: int, *, attach: Callable[[], int],
                           created: Callable[[int], int], detached: Callable[[int], None]) -> None:
    """Link create and then BPF_LINK_DETACH, each inside a CgroupChurn of tree, until both walks have
    been raced at least once (under single-threaded TCG a churn mkdir can spin out a whole walk on
    the series' mutex, so cycles repeat, each one checked in full). created(fd) checks the files and
    returns the link id; detached(fd) checks that none is left; then the fd is closed and the link
    must be gone with it."""
    raced = {"create": 0, "detach": 0}
    for attempt in range(attempts):
        with CgroupChurn(tree, seed * 1000 + 2 * attempt) as churn:
            fd = attach()
        try:
            raced["create"] += churn.during > 0
            link_id = created(fd)
            with CgroupChurn(tree, seed * 1000 + 2 * attempt + 1) as churn:
                libbpf.link_detach(fd)
            raced["detach"] += churn.during > 0
            detached(fd)
        finally:
            os.close(fd)
        try:
            libbpf.link_fd_by_id(link_id)
        except LibbpfError as err:
            assert err.errno == errno.ENOENT, err
        else:
            raise AssertionError(f"link {link_id} outlived its only fd")
        if all(raced.values()):
            return
    raise AssertionError(f"a walk was never raced in {attempts} cycles: {raced}")


class LoadedStats:
    """Stats loaded as kernel-series links once per test session and handed to each test in its own
    bpffs (StatLink.rehome: the map pinned and a collector attached there). One load of hist_oncpu
    takes minutes on the debug kernel under TCG, and the guest suites' fixtures would otherwise load
    it for every test. A test that closes its stat gets a fresh load the next time."""

    def __init__(self) -> None:
        self._loaded: dict[tuple[type[StatLink], str], StatLink] = {}

    def get(self, cls: type[S], layout: Layout, spec: StatProgram) -> S:
        key = (cls, spec.name)
        cached = self._loaded.get(key)
        if isinstance(cached, cls) and not cached.closed:
            cached.rehome(layout)
            return cached
        fresh = cls(layout, spec)
        self._loaded[key] = fresh
        return fresh

    def close(self) -> None:
        for s in self._loaded.values():
            s.close()
        self._loaded.clear()

    def __enter__(self) -> LoadedStats:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
