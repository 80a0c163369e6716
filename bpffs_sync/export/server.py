"""The HTTP side of `bpffs-sync export`: /metrics (text format 0.0.4), /healthz and /livez.

Connections are served concurrently (one daemon thread each, at most MAX_CONNECTIONS at once; one more
gets a 503 and is closed, like node-exporter's --web.max-requests), each socket read and write bounded
by REQUEST_TIMEOUT: a client that sends half a request line, or stops reading, holds one thread for a
while and never delays a scrape. The scrape body itself is built one at a time (Exporter's lock): two
overlapping scrapes would only double the CPU. A client that goes away (reset, broken pipe, timeout) is
one `export_client_gone` line, never a traceback.

/healthz is the mirror daemon's health (published.py): 200 `ok`, or 503 and a one-line reason when no
daemon runs or its last pass is older than --stale-after x its resync interval. /livez is the exporter's
own: 200 whenever it answers.

Binds 127.0.0.1 by default; `--address ::` or `0.0.0.0` exposes it to the network on purpose (the
DaemonSet binds the pod's own address).
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from types import FrameType
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from bpffs_sync import log
from bpffs_sync.export import files, published, render
from bpffs_sync.export.health import Health, Verifier
from bpffs_sync.programs import CATALOGUE

_log = log.get(__name__)
REQUEST_TIMEOUT = 10.0  # seconds a connection may take for each read or write (Prometheus' default scrape timeout)
MAX_CONNECTIONS = 8  # connections served at once; one more is answered 503 and closed
_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class ExportOptions:
    bpffs: str
    cgroup_root: str | None  # for verify when no daemon telemetry names the trees
    address: str = "127.0.0.1"
    port: int = 9847
    filter: files.Filter = field(default_factory=files.Filter)
    bucket_stride: int = 1
    detail: str = render.SUMMARY  # render.SUMMARY or render.BUCKETS
    verify_interval: float = 300.0  # 0: never
    kernel_links: bool = False
    version: str = ""
    stale_after: float = published.STALE_AFTER  # /healthz: the last pass at most this many resync intervals ago
    request_timeout: float = REQUEST_TIMEOUT
    max_connections: int = MAX_CONNECTIONS


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
    """Builds one scrape's body; scrapes from concurrent connections take turns (one lock)."""

    def __init__(self, opts: ExportOptions, verifier: Verifier | None = None) -> None:
        self.opts = opts
        self.stats = frozenset(render.STATS) & frozenset(CATALOGUE)
        self.me = _SelfMetrics(opts.version)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.me)
        self.registry.register(Health(opts.bpffs, verifier, opts.kernel_links, opts.stale_after))
        self._lock = threading.Lock()

    def scrape(self) -> bytes:
        with self._lock:
            return self._scrape()

    def _scrape(self) -> bytes:
        started, cpu = time.monotonic(), time.thread_time()
        walked = files.walk(self.opts.bpffs, self.stats, self.opts.filter)
        fams = render.render(walked.readings, self.opts.bucket_stride, self.opts.detail)
        self.me.scrapes += 1
        self.me.read_errors += walked.errors
        self.me.parse_errors += fams.parse_errors
        self.me.cgroups = walked.cgroups
        self.me.refused = walked.refused
        body = generate_latest(self.registry) + fams.text().encode("utf-8")
        self.me.seconds = time.monotonic() - started
        self.me.cpu_seconds = time.thread_time() - cpu
        return body

    def health(self) -> tuple[bool, str]:
        """(healthy, one line): the daemon's published state (published.judge)."""
        return published.judge(published.read(self.opts.bpffs), time.time(), self.opts.stale_after)


def _handler(exporter: Exporter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = exporter.opts.request_timeout  # StreamRequestHandler sets it on the socket: every read and write

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, exporter.scrape())
            elif path == "/healthz":
                ok, reason = exporter.health()
                self._send(200 if ok else 503, _TEXT, f"{reason}\n".encode())
            elif path == "/livez":
                self._send(200, _TEXT, b"ok\n")
            elif path == "/":
                self._send(200, "text/html; charset=utf-8",
                           b'<html><body><a href="/metrics">bpffs-sync metrics</a></body></html>\n')
            else:
                self._send(404, _TEXT, b"not found\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            _log.debug("export_request", client=self.client_address[0], request=format % args)

    return Handler


_BUSY = (b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
         b"Content-Length: 18\r\nConnection: close\r\n\r\ntoo many requests\n")


class _Server(ThreadingHTTPServer):
    """One daemon thread per connection, at most `max_connections` at once; errors of a connection
    are one log line (the client going away is not the exporter's failure)."""

    daemon_threads = True  # a stuck client never holds up the exit
    block_on_close = False

    def __init__(self, address: str, port: int, handler: type[BaseHTTPRequestHandler], max_connections: int) -> None:
        self.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__((address, port), handler)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Runs in the accepting thread: a free slot starts the connection's thread, else a 503."""
        if not self._slots.acquire(blocking=False):
            _log.info("export_busy", client=client_address[0])
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Instead of socketserver's traceback on stderr (non-JSON lines in a JSON log): one line."""
        err = sys.exc_info()[1]
        client = client_address[0] if client_address else ""
        if isinstance(err, OSError):  # reset, broken pipe, a read or write past the timeout
            _log.info("export_client_gone", client=client, error=type(err).__name__, errno=err.errno or 0)
        else:
            _log.error("export_request_failed", client=client, error=f"{type(err).__name__}: {err}")


def make_server(opts: ExportOptions, exporter: Exporter) -> HTTPServer:
    return _Server(opts.address, opts.port, _handler(exporter), opts.max_connections)


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
