"""The report's PNGs (matplotlib, Agg): latency CDFs of the read loops, p99 idle vs under churn,
and the populate scaling curve vs cgroup count. Each plot takes results.json's shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bpffs_sync.measure.report import stats


def _cdf_plot(path: Path, series: dict[str, list[int]], title: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, samples in series.items():
        xs, ys = stats.cdf(samples)
        ax.step(xs, ys, where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency per read (us, log)")
    ax.set_ylabel("fraction of reads")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def read_cdfs(doc: dict[str, Any], out: Path) -> list[str]:
    made = []
    for loop, name in (("c", "read_cdf_c.png"), ("py", "read_cdf_python.png")):
        series = {k: v[loop]["samples_ns"] for k, v in doc["read"].items()
                  if stats.is_measured(v) and stats.is_measured(v[loop])}
        _cdf_plot(out / name, series, f"read cost per mechanism, {'C' if loop == 'c' else 'Python'} loop (host)")
        made.append(name)
    return made


def guest_cdf(doc: dict[str, Any], out: Path) -> list[str]:
    """The patched-kernel files and cpu.stat of the same guest boot (TCG: compare the curves' offsets)."""
    p = doc.get("patched", {})
    series = {f"Approach {k[1]} file": p[f"{k}_file"]["read"]["c"]["samples_ns"] for k in ("a1", "a2")
              if stats.is_measured(p.get(f"{k}_file"))}
    if not series:
        return []
    if stats.is_measured(p.get("baseline_cpu_stat")):
        series["cgroupfs cpu.stat"] = p["baseline_cpu_stat"]["c"]["samples_ns"]
    _cdf_plot(out / "read_cdf_guest.png", series, "read cost, C loop, patched kernel (one guest boot, TCG)")
    return ["read_cdf_guest.png"]


def churn_bars(doc: dict[str, Any], out: Path) -> str:
    keys = [k for k, v in doc["churn"].items() if stats.is_measured(v) and stats.is_measured(doc["read"][k])
            and stats.is_measured(doc["read"][k]["c"])]
    idle = [doc["read"][k]["c"]["summary"]["p99_us"] for k in keys]
    busy = [doc["churn"][k]["summary"]["p99_us"] for k in keys]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = range(len(keys))
    ax.bar([x - 0.2 for x in xs], idle, 0.4, label="idle")
    ax.bar([x + 0.2 for x in xs], busy, 0.4, label="under mkdir/rmdir churn")
    ax.set_xticks(list(xs), keys, rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("p99 read latency, C loop (us, log)")
    ax.set_title("read p99 idle vs under concurrent cgroup mkdir/rmdir")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "churn_p99.png", dpi=110)
    plt.close(fig)
    return "churn_p99.png"


def scaling(doc: dict[str, Any], out: Path) -> str:
    bench = doc.get("patched", {}).get("bench_a2", {})
    rows = bench.get("link_create", {}) if stats.is_measured(bench) else {}
    rows = rows if stats.is_measured(rows) else {}
    fig, axes = plt.subplots(1, 2 if rows else 1, figsize=(12 if rows else 8, 4.5), squeeze=False)
    ax = axes[0][0]
    pop = doc["populate"]
    ns = [p["cgroups"] for p in pop]
    ax.plot(ns, [p["first_pass_ns"] / 1e6 for p in pop], "o-", label="user-space mirror: first full pass")
    ax.plot(ns, [p["mkdir_ns"] / 1e6 for p in pop], "s--", label="baseline: mkdir of the same cgroups")
    ax.set_title("host: populate time vs number of cgroups")
    if rows:
        gx = axes[0][1]
        sizes = sorted(rows, key=int)
        xs = [rows[n]["cgroups"] for n in sizes]
        for key, mark, what in (("a1", "^-", "no cgroup_mutex hold"), ("a2", "v-", "= cgroup_mutex hold")):
            gx.plot(xs, [rows[n][f"{key}_s"] * 1e3 for n in sizes], mark,
                    label=f"Approach {key[1]}: link create, {what}")
        mk = bench.get("mkdir", {}).get("none_mkdir_us")  # absent from a not_measured part: None
        if mk:
            gx.plot(xs, [x * mk / 1e3 for x in xs], "s--", label="baseline: N x one mkdir (same boot)")
        gx.set_title("guest (TCG, one boot): link create vs number of cgroups")
    for a in axes[0]:
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("cgroups")
        a.set_ylabel("ms (log)")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=110)
    plt.close(fig)
    return "scaling.png"


def all_plots(doc: dict[str, Any], out: Path) -> list[str]:
    return [*read_cdfs(doc, out), *guest_cdf(doc, out), churn_bars(doc, out), scaling(doc, out)]
