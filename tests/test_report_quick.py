"""`bpffs-sync report --quick` end to end on this kernel: every cell filled, plots and raw samples
written, patched rows honest about why they are absent. One run shared by the module's tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def _reject(name: str) -> Any:
    raise ValueError(f"non-finite number in results.json: {name}")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    if os.geteuid() != 0 or not (REPO / "build" / "bpf" / "hist_oncpu.bpf.o").exists():
        pytest.skip("needs root and the BPF objects (make bpf)")
    out = tmp_path_factory.mktemp("report")
    proc = subprocess.run([sys.executable, "-m", "bpffs_sync", "report", "--quick", "--kernel", "no", "--json",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    yield out, json.loads((out / "results.json").read_text(), parse_constant=_reject)


def _md_rows(md: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in md.splitlines()
            if line.startswith("| ") and not line.startswith("|---")]


def test_every_markdown_cell_is_filled(report: tuple[Path, dict[str, Any]]) -> None:
    """No empty cell and no nan/inf anywhere in report.md's tables."""
    out, _ = report
    rows = _md_rows((out / "report.md").read_text())
    bad = [r for r in rows if any(not c or c.lower() in ("nan", "inf", "none") or " nan " in f" {c.lower()} "
                                  for c in r[1:])]
    assert rows and not bad


def test_plots_are_pngs(report: tuple[Path, dict[str, Any]]) -> None:
    """The four plots exist, are PNGs, and report.md and report.html show them."""
    out, _ = report
    names = ["read_cdf_c.png", "read_cdf_python.png", "churn_p99.png", "scaling.png"]
    assert all((out / n).read_bytes()[:8] == PNG for n in names)
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert all(f"]({n})" in md and f"src='{n}'" in page for n in names)


def test_results_keep_every_raw_sample(report: tuple[Path, dict[str, Any]]) -> None:
    """Each measured read keeps all its C-loop samples (the quick plan's count)."""
    _, doc = report
    want = doc["meta"]["plan"]["n_c"]
    counts = {k: len(v["c"]["samples_ns"]) for k, v in doc["read"].items() if "not_measured" not in v}
    assert counts and set(counts.values()) == {want}


def test_bpf_mechanisms_read_the_same_stat(report: tuple[Path, dict[str, Any]]) -> None:
    """The mirror's file, BPF_PROG_RUN, the map and a per-read iterator all read one total_ns."""
    _, doc = report
    values = {doc["read"][k]["c"]["value"] for k in ("mirror_iter", "prog_run", "map_lookup", "iter_per_read")}
    assert len(values) == 1 and values.pop() > 0


def test_patched_rows_say_why(report: tuple[Path, dict[str, Any]]) -> None:
    """With --kernel no both approaches' rows carry that reason; Approach 2, landed, is never called absent."""
    out, doc = report
    md = (out / "report.md").read_text()
    why = "not measured: patched kernel not booted (--kernel no)"
    assert doc["patched"] == {"not_measured": "patched kernel not booted (--kernel no)"}
    assert doc["loc"]["a2_file"]["kernel"] > 0  # kernel-approach2/patches is in this checkout
    for name in ("Approach 1 file, patched kernel", "Approach 2 file, patched kernel"):
        assert f"| {name} (guest) | {why} |" in md  # the headline
    assert f"## Every mechanism in the same guest boot (patched kernel, TCG)\n\n{why}\n" in md
    assert f"Not compared: the guest's reads: {why}." in md  # the cross-check
    assert "has not landed" not in md


def test_report_records_where_it_ran(report: tuple[Path, dict[str, Any]]) -> None:
    """Kernel, CPU, date, commit and emulation are recorded."""
    _, doc = report
    m = doc["meta"]
    assert m["kernel"] == os.uname().release and len(m["commit"]) == 40 and m["cpu"]["emulated"] in (True, False)


def test_out_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    """--out naming a regular file: one line on stderr, exit 2."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    f = tmp_path / "file"
    f.write_text("")
    proc = subprocess.run([sys.executable, "-m", "bpffs_sync", "report", "--out", str(f)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("bpffs-sync: error: report --out") \
        and proc.stderr.count("\n") == 1


def _fake_guest(seed: int, a2_us: float, samples: bool = False) -> dict[str, Any]:
    """A patched-kernel part in the shape inguest.py and bench_a2 give (synthetic numbers): the full
    run's render path, checked without booting a guest."""
    import random

    from bpffs_sync.measure.report import measures

    rng = random.Random(seed)

    def ser(mu: float, n: int = 500) -> dict[str, Any]:
        return measures.series(7, [int(rng.gauss(mu, mu * 0.05)) for _ in range(n)])

    def file(mu: float) -> dict[str, Any]:
        tries: list[tuple[int | None, int]] = [(int(rng.gauss(300e3, 1e4)), 1) for _ in range(20)]
        return {"file": "/x", "read": {"c": ser(mu), "py": ser(mu * 3)}, "churn": ser(mu * 1.3),
                "mkdir_readable": measures.readable_summary(tries) | {"definition": measures.READABLE},
                "usability": {"cat / grep": "yes: reads", "unprivileged (uid 65534)": "yes: reads",
                              "cgroup v1": "no: link create fails", "after rmdir": "ENOENT",
                              "daemon crash": "n/a: no daemon: the loader exited"}}

    one = {f"{k}_{op}_{u}": v for k, m in (("a1", 1.3), ("a2", 1.1)) for op, base in (("mkdir", 100), ("rmdir", 80))
           for u, v in (("us", base * m), ("vs_none", m))}
    bench: dict[str, Any] = {
        "link_create": {"100": {"a1_s": 0.1, "a1_us_per_cgroup": 990.0, "a2_s": 0.2, "a2_us_per_cgroup": 1980.0}},
        "mkdir": {"rounds": 300, "none_mkdir_us": 100.0, "none_rmdir_us": 80.0, "1": one},
        "stall": {"cgroups": 100, "idle_worst_ms": 1.0, "idle_samples": 500, "a1_worst_ms": 1.2, "a1_vs_idle": 1.2,
                  "a2_worst_ms": 5.0, "a2_vs_idle": 5.0},
        "slab_per_file": {"files": 100, "a1_bytes_per_file": 900.0, "a2_bytes_per_file": 600.0}}
    if samples:  # the shape inguest._mkdir_cost and _stall keep: every round, every probe mkdir

        def ns(mu: float, n: int = 300) -> list[int]:
            return [int(rng.gauss(mu, mu * 0.05)) for _ in range(n)]

        bench["mkdir"]["samples_ns"] = {c: {"mkdir": ns(100e3 * m), "rmdir": ns(80e3 * m)} for c, m in
                                        (("none", 1.0), ("a1:1", 1.3), ("a2:1", 1.1), ("a1:4", 1.5), ("a2:4", 1.2))}
        bench["stall"] |= {"idle_samples_ns": ns(50e3, 500), "a1_samples_ns": ns(60e3, 40),
                           "a2_samples_ns": ns(400e3, 13)}
    return {"carries": ["a1", "a2"], "image": {"path": "/k/bzImage", "series": "A1+A2", "sha256": "ab" * 32},
            "booted_matches_image": True, "guest_exit": 0, "kernel": "7.3.4+", "version": "#1", "cpu": "QEMU",
            "cpus": 2, "date": "today", "wall_s": 500.0, "guest_run_s": 400.0,
            "baseline_cpu_stat": {"c": ser(200e3), "py": ser(600e3), "churn": ser(260e3)},
            "a1_file": file(250e3), "a2_file": file(a2_us * 1e3),
            "bench_a2": bench}

def test_full_run_render_path_with_a_guest_part(report: tuple[Path, dict[str, Any]]) -> None:
    """This run's host rows plus a guest part in the full run's shape: every cell filled, the A1 vs A2
    pick printed with its intervals, and (bench_a2 giving medians only) no clear pick."""
    import copy

    from bpffs_sync.measure.report import render

    _, doc = report
    doc = copy.deepcopy(doc)
    doc["patched"] = _fake_guest(1, 240.0)
    secs = render.sections(doc)
    assert render.check_cells(secs) == []
    text = " ".join(next(s for s in secs if s.title.startswith("Verdict")).text)
    assert "Approach 2 wins read (weight 3: A1 " in text and "A2/A1 0.96x [" in text
    assert "No clear pick: the axes without an interval or not measured weigh 7" in text


def test_full_run_pick_with_every_axis_sampled(report: tuple[Path, dict[str, Any]]) -> None:
    """With the guest's samples of mkdir/rmdir under links and of the stall probe, those axes are
    decided by intervals (the stall by p99, 40 against 13 probe mkdirs), and the pick is made."""
    import copy

    from bpffs_sync.measure.report import render

    _, doc = report
    doc = copy.deepcopy(doc)
    doc["patched"] = _fake_guest(2, 240.0, samples=True)
    secs = render.sections(doc)
    assert render.check_cells(secs) == []
    text = " ".join(next(s for s in secs if s.title.startswith("Verdict")).text)
    assert "mkdir+rmdir under one link (weight 3: A1 1.3x, A2 1.1x no link (medians); A2/A1 0." in text
    assert "stall of a concurrent mkdir during link create (weight 2: p99 of the probe's mkdirs" in text
    assert text.endswith("Pick: Approach 2, by a margin of 5 that the open axes (2) cannot reverse.")
