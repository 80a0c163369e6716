"""The HTTP side of `bpffs-sync export`: /metrics (text format 0.0.4) and /healthz.

One scrape at a time (a plain HTTPServer): two overlapping scrapes would only double the CPU.
Binds 127.0.0.1 by default; `--address ::` or `0.0.0.0` exposes it to the network on purpose.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import FrameType

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from bpffs_sync import log
from bpffs_sync.export import files, render
from bpffs_sync.export.health import Health, Verifier
from bpffs_sync.programs import CATALOGUE

_log = log.get(__name__)


@dataclass(frozen=True, slots=True)
class ExportOptions:
    bpffs: str
    cgroup_root: str | None  # for verify when no daemon telemetry names the trees
    address: str = "127.0.0.1"
    port: int = 9847
    filter: files.Filter = field(default_factory=files.Filter)
    bucket_stride: int = 1
    verify_interval: float = 300.0  # 0: never
    kernel_links: bool = False
    version: str = ""


class _SelfMetrics(Collector):
    """The exporter's own figures: counts of this scrape, duration and CPU of the previous one."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.scrapes = 0
        self.read_errors = 0
        self.parse_errors = 0
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.cgroups: dict[str, int] = {}
        self.refused: list[str] = []

    def collect(self) -> list[Metric]:
        info = GaugeMetricFamily("bpffs_sync_build_info", "bpffs-sync version.", labels=["version"])
        info.add_metric([self.version], 1)
        cgroups = GaugeMetricFamily("bpffs_sync_export_cgroups", "cgroups exported per tree (after the "
                                    "depth and include/exclude filters).", labels=["tree"])
        for tree, n in sorted(self.cgroups.items()):
            cgroups.add_metric([tree], n)
        refused = GaugeMetricFamily("bpffs_sync_export_refused_trees", "Tree roots not read: not a directory "
                                    "owned by root.", value=len(self.refused))
        return [
            info, cgroups, refused,
            CounterMetricFamily("bpffs_sync_export_scrapes", "Scrapes served.", value=self.scrapes),
            CounterMetricFamily("bpffs_sync_export_read_errors", "Mirror entries that could not be read "
                                "(cgroups that went away mid-scrape are not errors).", value=self.read_errors),
            CounterMetricFamily("bpffs_sync_export_parse_errors", "Stat files that did not parse.",
                                value=self.parse_errors),
            GaugeMetricFamily("bpffs_sync_export_scrape_duration_seconds", "Wall time of the previous scrape.",
                              value=self.seconds),
            GaugeMetricFamily("bpffs_sync_export_scrape_cpu_seconds", "CPU time of the previous scrape.",
                              value=self.cpu_seconds),
        ]


class Exporter:
    """Builds one scrape's body. Not thread-safe: the server runs one scrape at a time."""

    def __init__(self, opts: ExportOptions, verifier: Verifier | None = None) -> None:
        self.opts = opts
        self.stats = frozenset(render.STATS) & frozenset(CATALOGUE)
        self.me = _SelfMetrics(opts.version)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.me)
        self.registry.register(Health(opts.bpffs, verifier, opts.kernel_links))

    def scrape(self) -> bytes:
        started, cpu = time.monotonic(), time.thread_time()
        walked = files.walk(self.opts.bpffs, self.stats, self.opts.filter)
        fams = render.render(walked.readings, self.opts.bucket_stride)
        self.me.scrapes += 1
        self.me.read_errors += walked.errors
        self.me.parse_errors += fams.parse_errors
        self.me.cgroups = walked.cgroups
        self.me.refused = walked.refused
        body = generate_latest(self.registry) + fams.text().encode("utf-8")
        self.me.seconds = time.monotonic() - started
        self.me.cpu_seconds = time.thread_time() - cpu
        return body


def _handler(exporter: Exporter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, exporter.scrape())
            elif path == "/healthz":
                self._send(200, "text/plain; charset=utf-8", b"ok\n")
            elif path == "/":
                self._send(200, "text/html; charset=utf-8",
                           b'<html><body><a href="/metrics">bpffs-sync metrics</a></body></html>\n')
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            _log.debug("export_request", client=self.client_address[0], request=format % args)

    return Handler


class _Server(HTTPServer):
    def __init__(self, address: str, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        super().__init__((address, port), handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def make_server(opts: ExportOptions, exporter: Exporter) -> HTTPServer:
    return _Server(opts.address, opts.port, _handler(exporter))


def serve(opts: ExportOptions) -> int:
    """Serve until SIGTERM/SIGINT. The verify thread starts first: its first result is ready early."""
    verifier = Verifier(opts.bpffs, opts.cgroup_root, opts.verify_interval) if opts.verify_interval > 0 else None
    exporter = Exporter(opts, verifier)
    server = make_server(opts, exporter)
    stop = threading.Event()

    def request_stop(signum: int = 0, frame: FrameType | None = None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if verifier is not None:
        verifier.start()
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    _log.info("export_listening", address=host, port=port, bpffs=opts.bpffs,
              verify_interval=opts.verify_interval, max_depth=opts.filter.max_depth)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        if verifier is not None:
            verifier.stop()
    return 0
