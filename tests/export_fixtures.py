"""Test helpers for `bpffs-sync export`: the exporter as a subprocess on 127.0.0.1, a scrape, a parse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass

from bpffs_sync.sandbox import wait_until

# The exporter as the DaemonSet runs it: its own PID namespace (where /proc/locks hides the daemon's lock), every
# capability dropped; unshare's child (the exporter, pid 1 there) gets SIGTERM when unshare dies.
UNPRIVILEGED = ("unshare", "--pid", "--fork", "--kill-child=SIGTERM", "--mount-proc",
                "setpriv", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--")


@dataclass
class Exporter:
    proc: subprocess.Popen[str]
    log_path: str
    port: int = 0

    def url(self, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def scrape(self, path: str = "/metrics", timeout: float = 30) -> str:
        with urllib.request.urlopen(self.url(path), timeout=timeout) as resp:
            body: bytes = resp.read()
        return body.decode()

    def get(self, path: str, timeout: float = 30) -> tuple[int, str]:
        """(status, body) of a GET, error statuses included."""
        try:
            with urllib.request.urlopen(self.url(path), timeout=timeout) as resp:
                return int(resp.status), resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def log_lines(self) -> list[str]:
        with open(self.log_path, encoding="utf-8") as f:
            return f.read().splitlines()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_exporter(bpffs: str, run_dir: str, *args: str, wrapper: tuple[str, ...] = ()) -> Exporter:
    """`bpffs-sync export --port 0` (any free port), its port read from the export_listening log line.
    wrapper: argv run in front of the interpreter (e.g. `unshare --pid --fork --mount-proc`)."""
    log_path = os.path.join(run_dir, "export.log")
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "bpffs_sync", "--log-format", "json", "export", "--bpffs", bpffs,
             "--port", "0", *args], stdout=log, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "BPFFS_SYNC_RUN_DIR": run_dir})
    exp = Exporter(proc, log_path)

    def listening() -> bool:
        with open(log_path, encoding="utf-8") as f:
            for line in f:
                try:
                    doc = json.loads(line)
                except ValueError:
                    continue
                if doc.get("event") == "export_listening":
                    exp.port = int(doc["port"])
                    return True
        return proc.poll() is not None

    try:
        wait_until(listening, 30, "exporter listening", poll=0.02)
    except BaseException:
        exp.stop()
        raise
    if proc.poll() is not None:
        with open(log_path, encoding="utf-8") as f:
            raise AssertionError(f"exporter exited {proc.returncode}: {f.read()}")
    return exp


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value for every sample line of a text-format scrape."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out
