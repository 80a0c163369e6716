"""`bpffs-sync export` against a real mirror: the figures are the files', health comes from the daemon
and verify, and the walk never leaves the mirror it trusts."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from export_fixtures import UNPRIVILEGED, Exporter, samples, start_exporter
from helpers import Mirror, cli, mirror_on, wait_for

from bpffs_sync.commands.demo import burn_in
from bpffs_sync.export.files import Filter, walk
from bpffs_sync.export.health import Verifier
from bpffs_sync.export.server import Exporter as ScrapeBuilder
from bpffs_sync.export.server import ExportOptions
from bpffs_sync.histogram import parse_stat
from bpffs_sync.sandbox import private_bpffs, private_cgroup_root

STATS = frozenset({"hist_oncpu"})


@pytest.fixture
def running(mirror: Mirror) -> Iterator[tuple[Mirror, Exporter]]:
    """A daemon mirroring jobs/a (burnt 0.2 s, then idle) and jobs/b, and an exporter on it."""
    os.makedirs(mirror.cg("jobs/a"))
    os.makedirs(mirror.cg("jobs/b"))
    mirror.start()
    burn_in(mirror.cg("jobs/a"), 0.2)
    exp = start_exporter(mirror.bpffs, mirror.run_dir, "--cgroup-root", mirror.cgroup_root)
    try:
        yield mirror, exp
    finally:
        exp.stop()


@contextmanager
def _mirrored_once(bpffs_mount: str, cgroup_root: str, rels: Iterable[str]) -> Iterator[Mirror]:
    """A mirror made by one `run --once` pass over the cgroups rels (no daemon left running)."""
    with mirror_on(bpffs_mount, cgroup_root) as m:
        for rel in rels:
            os.makedirs(m.cg(rel))
        m.cli("run", "--once", check=True)
        yield m


@pytest.fixture
def once(bpffs_mount: str, cgroup_root: str) -> Iterator[Mirror]:
    """A mirror made by one `run --once` pass over jobs/a/b."""
    with _mirrored_once(bpffs_mount, cgroup_root, ["jobs/a/b"]) as m:
        yield m


def test_scrape_figures_are_the_files(running: tuple[Mirror, Exporter]) -> None:
    """jobs/a's _count and _sum are its hist_oncpu file's slices and total_ns (idle now, so stable)."""
    mirror, exp = running
    with open(mirror.stat_path("jobs/a"), encoding="utf-8") as f:
        stat = parse_stat(f.read())
    s = samples(exp.scrape())
    assert stat.summary["slices"] > 0
    assert s['bpffs_sync_hist_oncpu_seconds_count{cgroup="/jobs/a"}'] == stat.summary["slices"]
    assert s['bpffs_sync_hist_oncpu_seconds_sum{cgroup="/jobs/a"}'] == pytest.approx(stat.summary["total_ns"] / 1e9)
    assert s['bpffs_sync_hist_oncpu_seconds_count{cgroup="/jobs/b"}'] == 0


def test_daemon_health_comes_from_its_telemetry(running: tuple[Mirror, Exporter]) -> None:
    """With the daemon running: up is 1 and its pass counters are exported."""
    _, exp = running
    s = samples(exp.scrape())
    assert s["bpffs_sync_daemon_up"] == 1
    assert s["bpffs_sync_full_passes_total"] >= 1
    assert "bpffs_sync_watches" in s


def test_event_lag_and_pass_durations_are_histograms(running: tuple[Mirror, Exporter]) -> None:
    """Three cgroups made one at a time: the event -> mirrored histogram counts exactly their three
    hints, its buckets are cumulative up to +Inf, and pass durations and overflows are exported."""
    mirror, exp = running
    name = "bpffs_sync_event_to_mirror_seconds"
    before = samples(exp.scrape()).get(f"{name}_count", 0)
    for i in range(3):
        os.mkdir(mirror.cg(f"jobs/n{i}"))
        wait_for(lambda i=i: os.path.exists(mirror.stat_path(f"jobs/n{i}")), 10, "mirrored")  # type: ignore[misc]
    wait_for(lambda: samples(exp.scrape()).get(f"{name}_count", 0) == before + 3, 10, "three lags recorded")
    s = samples(exp.scrape())
    buckets = sorted((float(k.split('le="')[1].rstrip('"}')), v) for k, v in s.items()
                     if k.startswith(f"{name}_bucket") and "+Inf" not in k)
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and counts[-1] == s[f'{name}_bucket{{le="+Inf"}}'] == s[f"{name}_count"]
    assert 0 < s[f"{name}_sum"] < 10
    assert s["bpffs_sync_reconcile_pass_duration_seconds_count"] == s["bpffs_sync_reconcile_passes_total"]
    assert s["bpffs_sync_inotify_overflows_total"] == 0


def test_daemon_down_after_it_stops(running: tuple[Mirror, Exporter]) -> None:
    """Once the daemon stops, up is 0 (the lock is free) and its counters are gone."""
    mirror, exp = running
    mirror.stop()
    s = samples(exp.scrape())
    assert s["bpffs_sync_daemon_up"] == 0
    assert "bpffs_sync_full_passes_total" not in s


def test_verify_counts_drift_by_reason(once: Mirror) -> None:
    """A removed stat file shows as one `missing` entry in the verify thread's result."""
    os.unlink(once.stat_path("jobs/a"))
    verifier = Verifier(once.bpffs, once.cgroup_root, 3600)
    verifier.run_once()
    res = verifier.snapshot()
    assert res.drift["cgroup"]["missing"] == 1
    assert res.drift["cgroup"]["stale"] == 0


def test_max_depth_prunes_the_walk(once: Mirror) -> None:
    """--max-depth 1 exports the root and jobs, not jobs/a or jobs/a/b."""
    got = walk(once.bpffs, STATS, Filter(max_depth=1))
    assert sorted(r.cgroup for r in got.readings) == ["/", "/jobs"]


def test_exclude_skips_a_subtree(once: Mirror) -> None:
    """--exclude '/jobs/a*' keeps / and /jobs."""
    got = walk(once.bpffs, STATS, Filter(exclude=("/jobs/a*",)))
    assert sorted(r.cgroup for r in got.readings) == ["/", "/jobs"]


def test_foreign_tree_root_is_refused(once: Mirror) -> None:
    """A `cgroup` directory owned by another user is not read (a look-alike in the sticky bpffs root)."""
    os.chown(os.path.join(once.bpffs, "cgroup"), 65534, 65534)
    try:
        got = walk(once.bpffs, STATS, Filter())
    finally:
        os.chown(os.path.join(once.bpffs, "cgroup"), 0, 0)
    assert got.refused == ["cgroup"]
    assert got.readings == []


def test_symlinked_tree_root_is_not_followed(bpffs_mount: str, kernel: None) -> None:
    """<bpffs>/cgroup as a symlink to a directory of look-alike files yields nothing."""
    fake = tempfile.mkdtemp(prefix="bpffs-sync-fake-")
    try:
        with open(os.path.join(fake, "hist_oncpu"), "w", encoding="utf-8") as f:
            f.write("cgroup_id: 1\ntotal_ns: 5\nslices: 1\n")
        os.symlink(fake, os.path.join(bpffs_mount, "cgroup"))
        got = walk(bpffs_mount, STATS, Filter())
    finally:
        if os.path.islink(os.path.join(bpffs_mount, "cgroup")):
            os.unlink(os.path.join(bpffs_mount, "cgroup"))
        shutil.rmtree(fake)
    assert got.readings == []


def test_export_needs_an_existing_bpffs_dir(kernel: None) -> None:
    """A --bpffs that does not exist is one error line, exit 2."""
    res = cli("export", "--bpffs", "/nonexistent/bpffs", "--port", "0")
    assert res.returncode == 2
    assert res.stderr.startswith("bpffs-sync: error: export /nonexistent/bpffs")


# --- an exporter without privileges, in its own PID namespace ------------------------------------------------


def _child_of(pid: int) -> int:
    """The one child of pid (unshare --fork's: the exporter itself)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii").split()
    assert len(text) == 1, text
    return int(text[0])


def _status(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_exporter_in_its_own_pid_namespace_without_capabilities(mirror: Mirror) -> None:
    """`unshare --pid --fork --mount-proc` + every capability dropped (the DaemonSet's exporter): /proc/locks
    shows it no lock of the daemon's, yet daemon_up and daemon_healthy are 1, /healthz is ok, the daemon's
    drift is exported and jobs/a.b's figures are read."""
    if shutil.which("unshare") is None or shutil.which("setpriv") is None:
        pytest.skip("no unshare/setpriv (util-linux)")
    os.makedirs(mirror.cg("jobs/a.b"))
    mirror.start()
    exp = start_exporter(mirror.bpffs, mirror.run_dir, wrapper=UNPRIVILEGED)
    try:
        inner = _child_of(exp.proc.pid)
        assert len(_status(inner, "NSpid").split()) == 2  # a pid in ours and one in its own namespace
        assert int(_status(inner, "CapEff"), 16) == 0
        s = samples(exp.scrape())
        status = exp.get("/healthz")
    finally:
        exp.stop()
    assert s["bpffs_sync_daemon_up"] == 1
    assert s["bpffs_sync_daemon_healthy"] == 1
    assert status == (200, "ok\n")
    assert s['bpffs_sync_drift_entries{reason="missing",tree="cgroup"}'] == 0
    assert s['bpffs_sync_cgroups{tree="cgroup"}'] == 3  # the root, jobs, jobs/a.b
    assert 'bpffs_sync_hist_oncpu_seconds_count{cgroup="/jobs/a.b"}' in s


def _scrape_as_nobody(bpffs: str, run_dir: str) -> dict[str, float]:
    """One scrape built in a forked child that became uid/gid 65534 (no capability, no supplementary group)."""
    opts = ExportOptions(bpffs=bpffs, cgroup_root=None, verify_interval=0)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, scrape once, send the body back
        code = 1
        try:
            os.close(read)
            os.environ["BPFFS_SYNC_RUN_DIR"] = run_dir
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            body = ScrapeBuilder(opts).scrape()
            with os.fdopen(write, "wb") as out:
                out.write(body)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        body = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return samples(body.decode())


@pytest.fixture
def mode_700_mirror(kernel: None) -> Iterator[Mirror]:
    """A daemon on a bpffs mounted mode=0700 as systemd mounts /sys/fs/bpf (only root may enter its root)."""
    with (private_bpffs("mode=0700") as bpffs, private_cgroup_root() as cgroup_root,
          mirror_on(bpffs, cgroup_root) as m):
        os.chmod(m.run_dir, 0o755)  # as /run/bpffs-sync is (RuntimeDirectoryMode=0755)
        yield m


@pytest.fixture
def tree_view(mode_700_mirror: Mirror) -> Iterator[str]:
    """A directory holding only a read-only bind mount of the mirror's v2 tree at `cgroup` (the DaemonSet
    mounts hostPath /sys/fs/bpf/cgroup so for its non-root exporter)."""
    view = tempfile.mkdtemp(prefix="bpffs-sync-view-")
    os.chmod(view, 0o755)
    target = os.path.join(view, "cgroup")
    os.mkdir(target)
    try:
        subprocess.run(["mount", "--bind", os.path.join(mode_700_mirror.bpffs, "cgroup"), target], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", target], check=True)
            yield view
        finally:
            subprocess.run(["umount", "-l", target], check=False)
    finally:
        shutil.rmtree(view, ignore_errors=True)


@pytest.fixture
def started_700(mode_700_mirror: Mirror) -> Mirror:
    os.makedirs(mode_700_mirror.cg("jobs/a.b"))
    mode_700_mirror.start()
    return mode_700_mirror


def test_exporter_as_nobody_reads_a_bind_mounted_tree(started_700: Mirror, tree_view: str) -> None:
    """As uid 65534 with no capability, beside a daemon on a mode-0700 bpffs: through the bpffs itself it reads
    nothing; through a bind mount of the tree it reads every file, dotted names included, and finds the
    daemon (the run directory and its files are root's: trusted; the lock is the tree's bpffs's)."""
    direct = _scrape_as_nobody(started_700.bpffs, started_700.run_dir)
    assert not any(k.startswith("bpffs_sync_hist_oncpu_seconds") for k in direct)
    s = _scrape_as_nobody(tree_view, started_700.run_dir)
    assert s["bpffs_sync_daemon_up"] == 1
    assert s["bpffs_sync_daemon_healthy"] == 1
    assert 'bpffs_sync_hist_oncpu_seconds_count{cgroup="/jobs/a.b"}' in s
    assert s['bpffs_sync_export_cgroups{tree="cgroup"}'] == 3
    assert s["bpffs_sync_export_read_errors_total"] == 0


def test_daemon_publishes_drift_it_repaired(mirror: Mirror) -> None:
    """A stat file unpinned behind the daemon's back: its next deep full pass repairs it, and the exporter counts
    one `missing` entry repaired and shows none remaining, without verifying anything itself."""
    os.makedirs(mirror.cg("jobs/a"))
    mirror.start(resync_interval=0.2)  # quick full passes; every 10th walks bpffs (reconciler.DEEP_EVERY)
    os.unlink(mirror.stat_path("jobs/a"))
    wait_for(lambda: os.path.exists(mirror.stat_path("jobs/a")), 30, "repaired by a deep pass")
    key = 'bpffs_sync_drift_repaired_total{reason="missing",tree="cgroup"}'
    exp = start_exporter(mirror.bpffs, mirror.run_dir)
    try:
        wait_for(lambda: samples(exp.scrape()).get(key) == 1, 30, "the repair published")
        s = samples(exp.scrape())
    finally:
        exp.stop()
    assert s['bpffs_sync_drift_entries{reason="missing",tree="cgroup"}'] == 0
    assert "bpffs_sync_verify_runs_total" not in s


@pytest.fixture
def wide(bpffs_mount: str, cgroup_root: str) -> Iterator[Mirror]:
    """300 cgroups mirrored by one `run --once` (a scrape body of about 600 KB with --detail buckets, more than the
    sockets buffer)."""
    with _mirrored_once(bpffs_mount, cgroup_root, [f"j{i}" for i in range(300)]) as m:
        yield m


def test_a_scraper_that_resets_mid_body_is_one_json_line(wide: Mirror) -> None:
    """Three scrapers read the status line of a ~600 KB answer and reset: the exporter's write fails mid-body;
    each is one export_client_gone line, no traceback, and scrapes go on."""
    exp = start_exporter(wide.bpffs, wide.run_dir, "--detail", "buckets")  # the default body is ~34 KB
    try:
        assert len(exp.scrape()) > 400_000
        for _ in range(3):
            with socket.socket() as sock:
                # A small window and segment keep the exporter's send buffer small (it grows with cwnd x mss, and
                # loopback's mss is 64 KiB): the answer cannot all be queued, so its write is under way at the reset.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1000)
                sock.connect(("127.0.0.1", exp.port))
                sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
                assert sock.recv(12).startswith(b"HTTP/1.0 200")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_for(lambda: sum("export_client_gone" in line or "Traceback" in line for line in exp.log_lines()) >= 3,
                 30, "three failed writes handled")
        assert 'cgroup="/j299"' in exp.scrape()
        lines = exp.log_lines()
    finally:
        exp.stop()
    assert [line for line in lines if not line.startswith("{")] == []
    assert sum(json.loads(line).get("event") == "export_client_gone" for line in lines) == 3
