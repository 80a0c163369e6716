"""systemd's notify protocol (bpffs_sync/sdnotify.py) against a real AF_UNIX datagram socket bound here, as
systemd binds $NOTIFY_SOCKET: the notifier alone (path and abstract sockets), then the real daemon (READY=1
after its first full round, WATCHDOG=1 while passes complete and none once a pass is stuck, STOPPING=1)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from helpers import Mirror, wait_for

from bpffs_sync.sdnotify import MIN_GAP, Notifier

STUCK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stuck_daemon.py")


class Listener:
    """A bound SOCK_DGRAM socket and every datagram it got."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value
        self.got: list[str] = []

    def drain(self) -> list[str]:
        """Whatever arrived so far (without waiting)."""
        while True:
            try:
                self.got.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.got

    def until(self, pred: Callable[[list[str]], bool], timeout: float, what: str) -> list[str]:
        wait_for(lambda: pred(self.drain()), timeout, what, poll=0.02)
        return self.got


@pytest.fixture
def path_listener() -> Iterator[Listener]:
    work = tempfile.mkdtemp(prefix="bpffs-sync-notify-")
    path = os.path.join(work, "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.setblocking(False)
        try:
            yield Listener(sock, path)
        finally:
            shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def abstract_listener() -> Iterator[Listener]:
    name = f"bpffs-sync-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.setblocking(False)
        yield Listener(sock, "@" + name)


def test_ready_with_status_is_one_datagram(path_listener: Listener) -> None:
    """READY=1 and its STATUS= line travel in one datagram to a path socket; a newline in a status is folded."""
    n = Notifier({"NOTIFY_SOCKET": path_listener.env_value})
    try:
        assert n.ready("3 passes\nsecond line")
        assert n.stopping()
    finally:
        n.close()
    assert path_listener.drain() == ["READY=1\nSTATUS=3 passes second line", "STOPPING=1"]


def test_abstract_socket(abstract_listener: Listener) -> None:
    """`@name` is the abstract socket `\\0name`."""
    n = Notifier({"NOTIFY_SOCKET": abstract_listener.env_value})
    try:
        assert n.status("mirroring")
    finally:
        n.close()
    assert abstract_listener.drain() == ["STATUS=mirroring"]


def test_watchdog_at_most_once_per_gap(path_listener: Listener) -> None:
    """A burst of completed passes feeds the watchdog once per MIN_GAP (times given, not slept)."""
    n = Notifier({"NOTIFY_SOCKET": path_listener.env_value})
    try:
        sent = [n.watchdog(now=t) for t in (100.0, 100.0 + MIN_GAP / 2, 100.0 + MIN_GAP, 100.0 + MIN_GAP * 1.5)]
    finally:
        n.close()
    assert sent == [True, False, True, False]
    assert path_listener.drain() == ["WATCHDOG=1", "WATCHDOG=1"]


@pytest.mark.parametrize("value", [None, "", "relative/path", "vsock:2:1234"])
def test_no_socket_is_a_no_op(value: str | None) -> None:
    """Unset, empty or a form not supported here: nothing is sent, nothing raises."""
    n = Notifier({} if value is None else {"NOTIFY_SOCKET": value})
    assert not n.enabled
    assert not n.ready("x") and not n.watchdog() and not n.stopping()


def test_a_socket_that_went_away_is_not_an_error() -> None:
    """systemd gone (the socket path no longer exists): send returns False, nothing raises."""
    n = Notifier({"NOTIFY_SOCKET": "/nonexistent/bpffs-sync/notify"})
    assert n.enabled
    assert not n.ready()
    n.close()


def test_watchdog_usec_is_read_for_this_process() -> None:
    """WATCHDOG_USEC counts when WATCHDOG_PID is ours or absent (sd_watchdog_enabled)."""
    assert Notifier({"WATCHDOG_USEC": "120000000"}).watchdog_usec == 120_000_000
    assert Notifier({"WATCHDOG_USEC": "5", "WATCHDOG_PID": str(os.getpid())}).watchdog_usec == 5
    assert Notifier({"WATCHDOG_USEC": "5", "WATCHDOG_PID": "1"}).watchdog_usec == 0


# --- the real daemon --------------------------------------------------------------------------------------------


def _start(mirror: Mirror, listener: Listener, *argv: str, extra_env: dict[str, str] | None = None) -> None:
    """The daemon (or argv's launcher) on mirror with NOTIFY_SOCKET set; mirror.stop() ends it."""
    mirror.log_path = os.path.join(mirror.run_dir, "daemon.log")
    env = {
        **os.environ,
        **mirror.env,
        "NOTIFY_SOCKET": listener.env_value,
        "WATCHDOG_USEC": "1000000",
        **(extra_env or {}),
    }
    with open(mirror.log_path, "w", encoding="utf-8") as log:
        mirror.proc = subprocess.Popen(
            [
                sys.executable,
                *argv,
                "--log-format",
                "json",
                "run",
                *mirror.args(),
                "--user-space",
                "--resync-interval",
                "0.5",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )


def test_daemon_ready_watchdog_stopping(mirror: Mirror, path_listener: Listener) -> None:
    """The daemon says READY=1 (with a STATUS= line) after its first full round, WATCHDOG=1 after passes
    that completed, and STOPPING=1 on SIGTERM; a WatchdogSec below 3 resync intervals is logged."""
    os.makedirs(mirror.cg("jobs/a"))
    _start(mirror, path_listener, "-m", "bpffs_sync")
    got = path_listener.until(lambda g: any(m.startswith("READY=1\nSTATUS=1 full rounds") for m in g), 60, "READY=1")
    assert os.path.exists(mirror.stat_path("jobs/a"))  # READY means the mirror was built
    ready_at = len(got)
    path_listener.until(lambda g: "WATCHDOG=1" in g[ready_at:], 30, "a watchdog feed after READY")
    assert mirror.stop() == 0
    assert path_listener.drain()[-1] == "STOPPING=1"
    assert '"event": "watchdog_too_short"' in mirror.log()


def test_stuck_pass_stops_feeding(mirror: Mirror, path_listener: Listener) -> None:
    """A pass that never ends (tests/stuck_daemon.py: once the cgroup `hang` exists) stops the feeds: no
    WATCHDOG=1 arrives over 8 resync intervals (full rounds are due every 0.5 s), while before it every
    round fed; stopping still says STOPPING=1."""
    marker = os.path.join(mirror.run_dir, "hanging")
    _start(mirror, path_listener, STUCK, extra_env={"BPFFS_SYNC_TEST_HANG_MARKER": marker})
    got = path_listener.until(lambda g: "READY=1" in "".join(g), 60, "READY=1")
    fed_at = len(got)
    path_listener.until(lambda g: "WATCHDOG=1" in g[fed_at:], 30, "the watchdog fed while passes complete")
    os.mkdir(mirror.cg("hang"))
    wait_for(lambda: os.path.exists(marker), 30, "a pass stuck")
    stuck_at = len(path_listener.drain())
    time.sleep(4.0)  # 8 resync intervals: a loop that was not stuck would have fed (at most 1 s apart)
    assert "WATCHDOG=1" not in path_listener.drain()[stuck_at:]
    assert mirror.stop() == 0
    assert path_listener.drain()[-1] == "STOPPING=1"
