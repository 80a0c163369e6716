#!/usr/bin/env python3
"""Write kernel-approach1/selftests/upstream-table.md: upstream test_progs, pristine 7.3 vs 7.3 + the series.

Reads what upstream-selftests-run.sh left in build/selftests/upstream-run-<variant>/ (test_progs' text
output, which has every test and subtest with OK/SKIP/FAIL, and its -J summary, which has the failures'
logs), the exclusions (build/selftests/upstream-<variant>/EXCLUDED) and the phase times. A test or
subtest that passes on pristine and fails on patched is a REGRESSION: listed first, with its output.
Usage: upstream-selftests-table.py [--json]   (--json: the rows and regressions on stdout as JSON)
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

log = structlog.get_logger()

HERE = Path(__file__).resolve().parent.parent
REPO = HERE.parent
BUILD = REPO / "build" / "selftests"
CACHE = Path(os.environ.get("BPFFS_SYNC_KCACHE", "/var/cache/bpffs-sync/kernel"))
OUT = HERE / "selftests" / "upstream-table.md"
VARIANTS = ("pristine", "patched")
RUNS = ("core", "verifier")

TEST_RE = re.compile(r"^#\d+\s+(?P<test>\S+):(?P<res>FAIL|SKIP \(not built\)|OK \(SKIP: \d+/\d+\)|OK|SKIP)\s*$")
SUB_RE = re.compile(r"^#\d+/\d+\s+(?P<test>[^/\s]+)/(?P<sub>.*):(?P<res>OK|SKIP|FAIL)\s*$")
SUMMARY_RE = re.compile(r"^Summary: .*$", re.MULTILINE)


@dataclass
class Row:
    run: str
    test: str
    subtest: str
    pristine: str
    patched: str

    @property
    def regression(self) -> bool:
        return self.pristine.startswith("OK") and self.patched == "FAIL"


def parse_text(path: Path) -> dict[tuple[str, str], str]:
    """(test, subtest) -> result; subtest "" is the test's own line."""
    results: dict[tuple[str, str], str] = {}
    if not path.exists():
        return results
    for line in path.read_text(errors="replace").splitlines():
        if m := SUB_RE.match(line):
            results[(m["test"], m["sub"])] = m["res"]
        elif m := TEST_RE.match(line):
            results[(m["test"], "")] = m["res"]
    return results


def failure_logs(path: Path) -> dict[tuple[str, str], str]:
    """(test, subtest) -> the log test_progs wrote for a failure (from its -J summary)."""
    logs: dict[tuple[str, str], str] = {}
    if not path.exists():
        return logs
    try:
        summary = json.loads(path.read_text(errors="replace"))
    except json.JSONDecodeError:
        return logs
    for test in summary.get("results", []):
        logs[(test["name"], "")] = test.get("message", "")
        for sub in test.get("subtests", []):
            logs[(test["name"], sub["name"])] = sub.get("message", "")
    return logs


def build_rows() -> tuple[list[Row], dict[str, dict[tuple[str, str], str]]]:
    rows: list[Row] = []
    logs: dict[str, dict[tuple[str, str], str]] = {}
    for run in RUNS:
        res = {v: parse_text(BUILD / f"upstream-run-{v}" / f"{run}.txt") for v in VARIANTS}
        logs[run] = failure_logs(BUILD / "upstream-run-patched" / f"{run}.json")
        keys = sorted(set(res["pristine"]) | set(res["patched"]))
        for test, sub in keys:
            p = res["pristine"].get((test, sub), "-")
            q = res["patched"].get((test, sub), "-")
            # The verifier run has thousands of subtests: list a subtest only where the two differ.
            if run == "verifier" and sub and p == q:
                continue
            rows.append(Row(run, test, sub, p, q))
    return rows, logs


def first_line(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "?"


def read(path: Path, default: str = "") -> str:
    return path.read_text(errors="replace").strip() if path.exists() else default


def header() -> list[str]:
    frags = [
        HERE / "config" / "base.config",
        CACHE / "selftests-pristine/tools/testing/selftests/bpf/config",
        CACHE / "selftests-pristine/tools/testing/selftests/bpf/config.x86_64",
    ]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in frags if f.exists())).hexdigest()[:16]
    lines = [
        "# Upstream BPF selftests: pristine 7.3 vs 7.3 + the series, same config",
        "",
        f"Written {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC by "
        "`kernel-approach1/scripts/upstream-selftests.sh` (`make kernel-selftests`).",
        "",
        f"- **Config**: `vng --kconfig` + `kernel-approach1/config/base.config` + "
        f"`tools/testing/selftests/bpf/config` + `config.x86_64` (in that order; fragments sha256 {digest}), "
        "modules on; trees `selftests-pristine` and `selftests-patched` under `/var/cache/bpffs-sync/kernel`.",
        f"- **Kernels**: pristine `{read(BUILD / 'upstream-run-pristine' / 'uname', '?')}`, "
        f"patched `{read(BUILD / 'upstream-run-patched' / 'uname', '?')}`; "
        "booted under virtme-ng, TCG (`scripts/run-guest.sh`), 2 vCPUs, 4 GiB.",
        f"- **Compiler**: {first_line(['/usr/lib/llvm-19/bin/clang', '--version'])} (BPF), "
        f"{first_line(['gcc', '--version'])} (kernel, test_progs), ccache.",
        "- **test_progs**: the full upstream build (`make -C tools/testing/selftests/bpf test_progs`) of each "
        "tree; the same sources on both, the patched tree adds the series' `cgroup_stat` tests.",
    ]
    for v in VARIANTS:
        excl = read(BUILD / f"upstream-{v}" / "EXCLUDED", "(not built)")
        lines.append(f"- **Excluded from the {v} test_progs build**: {excl or 'nothing'}")
    lines += [
        "- **Commands** (in the guest, from the test_progs build directory):",
        "  `./test_progs -t libbpf_probes,bpf_iter,cgroup_iter,cgroup_hierarchical_stats,test_bpffs,"
        "cgroup_link,token,pinning,btf_dump,cgroup_stat,cgroup_stat_fail -J core.json` and "
        "`./test_progs -t verifier_ -J verifier.json` (`-t` is a substring match).",
    ]
    for v in VARIANTS:
        for run in RUNS:
            txt = BUILD / f"upstream-run-{v}" / f"{run}.txt"
            if txt.exists():
                m = SUMMARY_RE.findall(txt.read_text(errors="replace"))
                lines.append(f"- {v} {run}: {m[-1] if m else 'no summary (the run did not finish)'}")
        guest_rc = read(BUILD / f"upstream-run-{v}" / "guest.rc")
        if guest_rc == "3":
            lines.append(f"- {v}: the guest's dmesg had a WARNING/BUG/lockdep report (run-guest.sh rc 3)")
    times = read(CACHE / "selftests-times.log")
    if times:
        lines += ["", "Phase wall times (nice 19, 2 cores shared with other kernel builds):", "", "```", times, "```"]
    return lines


def render(rows: list[Row], logs: dict[str, dict[tuple[str, str], str]]) -> str:
    lines = header()
    regressions = [r for r in rows if r.regression]
    lines += ["", f"## Regressions (pass on pristine, fail on patched): {len(regressions)}", ""]
    for r in regressions:
        name = f"{r.test}/{r.subtest}" if r.subtest else r.test
        lines += [f"### {r.run}: {name}", "", "```"]
        lines += logs[r.run].get((r.test, r.subtest), "(no log)").splitlines()[-60:]
        lines += ["```", ""]
    new_fail = [r for r in rows if r.patched == "FAIL" and not r.regression]
    if new_fail:
        lines += [f"Failing on patched, not passing on pristine either (absent or failing there): {len(new_fail)}", ""]
        lines += [
            f"- {r.run}: {r.test}{'/' + r.subtest if r.subtest else ''} (pristine: {r.pristine})" for r in new_fail
        ]
    for run in RUNS:
        sel = [r for r in rows if r.run == run]
        if not sel:
            continue
        what = "every test and subtest" if run == "core" else "per test; subtests only where the two differ"
        lines += ["", f"## {run} ({what})", "", "| test | subtest | pristine | patched |", "|---|---|---|---|"]
        for r in sel:
            mark = " **REGRESSION**" if r.regression else ""
            lines.append(f"| {r.test} | {r.subtest} | {r.pristine} | {r.patched}{mark} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the rows and regressions as JSON")
    args = ap.parse_args()
    rows, logs = build_rows()
    if not rows:
        print("upstream-selftests-table: no test_progs output under build/selftests/upstream-run-*", file=sys.stderr)
        return 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(rows, logs))
    regressions = [r for r in rows if r.regression]
    log.info("table written", path=str(OUT), rows=len(rows), regressions=len(regressions))
    if args.json:
        print(json.dumps({"rows": [asdict(r) for r in rows], "regressions": [asdict(r) for r in regressions]}))
    return 2 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
