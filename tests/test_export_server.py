"""The exporter's HTTP side over real sockets on 127.0.0.1: a slow or vanishing client never stalls a scrape
nor writes a traceback, and /healthz says whether the daemon's last pass is recent. No kernel objects: the
bpffs is a plain directory, the "daemon" this process holding the lock and writing its document."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import tempfile
import time
import urllib.error
from collections.abc import Iterator
from typing import Any

import pytest
from export_fixtures import Exporter, samples, start_exporter
from helpers import cli

from bpffs_sync import rundir
from bpffs_sync.export.server import MAX_CONNECTIONS
from bpffs_sync.sandbox import wait_until


@pytest.fixture
def dirs() -> Iterator[tuple[str, str]]:
    """(a directory standing for the bpffs, a private run directory), removed afterwards."""
    top = tempfile.mkdtemp(prefix="bpffs-sync-export-")
    bpffs, run = os.path.join(top, "bpffs"), os.path.join(top, "run")
    os.mkdir(bpffs)
    os.mkdir(run, 0o755)
    try:
        yield bpffs, run
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture
def exporter(dirs: tuple[str, str]) -> Iterator[Exporter]:
    exp = start_exporter(*dirs)
    try:
        yield exp
    finally:
        exp.stop()


def _connect(exp: Exporter) -> socket.socket:
    return socket.create_connection(("127.0.0.1", exp.port), timeout=30)


def _still_open(sock: socket.socket) -> bool:
    """No data and no end of stream waiting: the server has neither answered nor closed it."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    finally:
        sock.settimeout(30)


def test_half_a_request_line_does_not_delay_a_scrape(exporter: Exporter) -> None:
    """A client that sent half a request line and waits: /metrics and /healthz are answered meanwhile."""
    with _connect(exporter) as slow:
        slow.sendall(b"GET /metr")
        body = exporter.scrape(timeout=20)  # a single-threaded server hangs here until the slow client leaves
        status, _ = exporter.get("/healthz", timeout=20)
        assert _still_open(slow)
    assert "bpffs_sync_export_scrapes_total" in body
    assert status in (200, 503)


def _reset_after_request(exp: Exporter) -> None:
    """Send a whole request, then close with a reset (SO_LINGER 0) before reading the answer: the server's
    write of its response fails (what a Prometheus scrape timeout does to it)."""
    sock = _connect(exp)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
    sock.close()


def _events(exp: Exporter, name: str) -> list[dict[str, Any]]:
    out = []
    for line in exp.log_lines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("event") == name:
            out.append(doc)
    return out


def test_a_client_that_goes_away_is_one_json_line(exporter: Exporter) -> None:
    """Three clients reset the connection before their answer: no traceback, every log line is JSON, and at
    most one export_client_gone line each."""
    for _ in range(3):
        _reset_after_request(exporter)
    exporter.scrape(timeout=20)
    wait_until(lambda: len(_events(exporter, "export_client_gone")) >= 3
               or any("Traceback" in line for line in exporter.log_lines()), 20, "the three failures handled")
    lines = exporter.log_lines()
    not_json = [line for line in lines if not line.startswith("{")]
    assert not_json == [], "\n".join(not_json[:20])
    gone = _events(exporter, "export_client_gone")
    assert len(gone) == 3
    assert {g["error"] for g in gone} <= {"ConnectionResetError", "BrokenPipeError"}


def test_connections_beyond_the_limit_are_refused_not_queued(exporter: Exporter) -> None:
    """MAX_CONNECTIONS idle connections: one more request is answered 503 at once; once they close, 200."""
    idle = [_connect(exporter) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in idle:
            sock.sendall(b"GET /")
        wait_until(lambda: bool(_events(exporter, "export_busy")) or _get_status(exporter) == 503, 20,
                   "a request refused")
        assert _get_status(exporter) == 503
    finally:
        for sock in idle:
            sock.close()
    wait_until(lambda: _get_status(exporter) == 200, 20, "served again")


def _get_status(exp: Exporter) -> int:
    try:
        return exp.get("/livez", timeout=20)[0]
    except (urllib.error.URLError, ConnectionError):
        return 0


# --- /healthz: the daemon's last pass --------------------------------------------------------------------


def _publish(files: rundir.RunFiles, **doc: Any) -> None:
    """Write a telemetry document as the lock holder (this process) would."""
    rundir.write_telemetry(files, {"pid": os.getpid(), "start_time": rundir.start_time(os.getpid()), **doc})


def test_healthz_fails_without_a_daemon(exporter: Exporter) -> None:
    """Nobody holds the lock: 503 and one line saying so; daemon_healthy 0."""
    status, body = exporter.get("/healthz")
    assert (status, body) == (503, "no bpffs-sync run holds this bpffs\n")
    assert samples(exporter.scrape())["bpffs_sync_daemon_healthy"] == 0


def test_healthz_fails_when_the_last_pass_is_stale(dirs: tuple[str, str], exporter: Exporter) -> None:
    """A daemon (this process holds the lock) whose last pass is 100 s old with a 10 s resync interval: 503 with
    a one-line reason; a fresh pass: 200 ok. --stale-after is 3 intervals by default."""
    bpffs, run = dirs
    with rundir.exclusive(bpffs, rundir.ROLE_RUN, run) as files:
        now = time.time()
        _publish(files, started_at=now - 200, last_pass_at=now - 100, resync_interval=10.0)
        status, body = exporter.get("/healthz")
        assert status == 503
        assert body.startswith("stale: last pass 100 s ago, more than 3 x the 10 s resync interval")
        assert body.count("\n") == 1
        s = samples(exporter.scrape())
        assert (s["bpffs_sync_daemon_up"], s["bpffs_sync_daemon_healthy"]) == (1, 0)
        _publish(files, started_at=now - 200, last_pass_at=time.time(), resync_interval=10.0)
        assert exporter.get("/healthz") == (200, "ok\n")
        assert samples(exporter.scrape())["bpffs_sync_daemon_healthy"] == 1


def test_healthz_before_the_first_pass_counts_from_the_start(dirs: tuple[str, str], exporter: Exporter) -> None:
    """No pass yet: the daemon's start is the reference (a long first pass is not stale until N intervals)."""
    bpffs, run = dirs
    with rundir.exclusive(bpffs, rundir.ROLE_RUN, run) as files:
        _publish(files, started_at=time.time() - 5, last_pass_at=0.0, resync_interval=10.0)
        assert exporter.get("/healthz") == (200, "ok\n")
        _publish(files, started_at=time.time() - 45, last_pass_at=0.0, resync_interval=10.0)
        status, body = exporter.get("/healthz")
        assert status == 503 and body.startswith("stale: started, no pass yet, 45 s ago")


def test_export_check_is_the_healthz_verdict(dirs: tuple[str, str]) -> None:
    """`export --check` prints /healthz's line and exits 0 / 1 (the daemon container's exec probe)."""
    bpffs, run = dirs
    env = {"BPFFS_SYNC_RUN_DIR": run}
    res = cli("export", "--bpffs", bpffs, "--check", env=env)
    assert (res.returncode, res.stdout) == (1, "no bpffs-sync run holds this bpffs\n")
    with rundir.exclusive(bpffs, rundir.ROLE_RUN, run) as files:
        _publish(files, started_at=time.time(), last_pass_at=time.time(), resync_interval=30.0)
        res = cli("export", "--bpffs", bpffs, "--check", env=env)
    assert (res.returncode, res.stdout) == (0, "ok\n")
