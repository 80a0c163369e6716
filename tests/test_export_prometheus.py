"""A real Prometheus (Debian's `prometheus`) scrapes `bpffs-sync export` on 127.0.0.1 (run in its own PID
namespace with no capability, as the DaemonSet runs it) and answers PromQL;
`promtool check metrics` accepts a scrape. One mirror, exporter and server for the module (seconds)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from export_fixtures import UNPRIVILEGED, Exporter, start_exporter
from helpers import Mirror

from bpffs_sync.commands.demo import burn_in
from bpffs_sync.sandbox import private_bpffs, private_cgroup_root, wait_until

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


@dataclass
class Stack:
    mirror: Mirror
    exporter: Exporter
    prom_port: int

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as resp:
            doc = json.load(resp)
        assert doc["status"] == "success", doc
        result: list[dict[str, Any]] = doc["data"]["result"]
        return result


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _prometheus(work: str, target_port: int) -> tuple[subprocess.Popen[bytes], int]:
    cfg = os.path.join(work, "prometheus.yml")
    with open(cfg, "w", encoding="utf-8") as f:
        f.write("global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
                "scrape_configs:\n"
                f"  - job_name: bpffs-sync\n    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n")
    port = _free_port()
    assert PROMETHEUS is not None
    log = open(os.path.join(work, "prometheus.log"), "wb")  # noqa: SIM115 - owned by the Popen
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={work}/data",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return proc, port


def _can_unshare() -> bool:
    return shutil.which("unshare") is not None and shutil.which("setpriv") is not None


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    from conftest import _capabilities

    reason = _capabilities()
    if reason:
        pytest.skip(reason)
    if PROMETHEUS is None:
        pytest.skip("no prometheus binary (apt-get install prometheus: scripts/install-deps.sh does)")
    with private_bpffs() as mnt, private_cgroup_root() as root:
        work = tempfile.mkdtemp(prefix="bpffs-sync-prom-")
        mirror = Mirror(mnt, root, work)
        os.makedirs(mirror.cg("jobs/a"))
        exporter: Exporter | None = None
        prom: subprocess.Popen[bytes] | None = None
        try:
            mirror.start()
            burn_in(mirror.cg("jobs/a"), 0.2)
            exporter = start_exporter(mnt, work, "--detail", "buckets", wrapper=UNPRIVILEGED if _can_unshare() else ())
            prom, prom_port = _prometheus(work, exporter.port)
            st = Stack(mirror, exporter, prom_port)

            def scraped() -> bool:
                try:
                    return bool(st.query('bpffs_sync_hist_oncpu_seconds_count{cgroup="/jobs/a"}'))
                except OSError:
                    return False

            wait_until(scraped, 60, "prometheus scraped the exporter", poll=0.2)
            yield st
        finally:
            if prom is not None:
                prom.terminate()
                prom.wait(30)
            if exporter is not None:
                exporter.stop()
            mirror.stop()
            shutil.rmtree(os.path.join(mnt, "cgroup"), ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)


def test_promql_returns_the_cgroup_series(stack: Stack) -> None:
    """PromQL over Prometheus's HTTP API returns jobs/a's slice count, as the file shows it."""
    from bpffs_sync.histogram import parse_stat

    with open(stack.mirror.stat_path("jobs/a"), encoding="utf-8") as f:
        slices = parse_stat(f.read()).summary["slices"]
    result = stack.query('bpffs_sync_hist_oncpu_seconds_count{cgroup="/jobs/a"}')
    assert len(result) == 1
    assert result[0]["metric"]["job"] == "bpffs-sync"
    assert float(result[0]["value"][1]) == slices


def test_promql_histogram_quantile(stack: Stack) -> None:
    """histogram_quantile over the exported buckets (--detail buckets) gives a finite slice length in seconds."""
    result = stack.query('histogram_quantile(0.5, bpffs_sync_hist_oncpu_seconds_bucket{cgroup="/jobs/a"})')
    assert len(result) == 1
    assert 0 < float(result[0]["value"][1]) < 10


def test_prometheus_sees_the_target_up(stack: Stack) -> None:
    """The scrape target is healthy (up == 1) and, though the exporter has no capability and its own PID
    namespace, the daemon shows as up and healthy with its drift through it."""
    if not _can_unshare():
        pytest.skip("no unshare/setpriv (util-linux): the exporter ran in this namespace")
    assert float(stack.query('up{job="bpffs-sync"}')[0]["value"][1]) == 1
    assert float(stack.query("bpffs_sync_daemon_up")[0]["value"][1]) == 1
    assert float(stack.query("bpffs_sync_daemon_healthy")[0]["value"][1]) == 1
    assert float(stack.query('sum(bpffs_sync_drift_entries{tree="cgroup"})')[0]["value"][1]) == 0


def test_promtool_check_metrics_is_clean(stack: Stack) -> None:
    """`promtool check metrics` finds nothing to say about a scrape."""
    if PROMTOOL is None:
        pytest.skip("no promtool (package prometheus)")
    res = subprocess.run([PROMTOOL, "check", "metrics"], input=stack.exporter.scrape(), capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout + res.stderr == ""
