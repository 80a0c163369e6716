"""Run every measure once, with progress on stderr, and collect results.json.

quick: sizes that fit under a minute here (see Plan.make for the figures); full: more samples and 10 000
cgroups.
kernel: "auto" boots the patched kernel (guest.py picks the image) when one is built and this
is not --quick, "yes" builds the image carrying both series first when none is, "no" never boots
(the patched rows then say why). The guest part's sizes are inguest.GuestPlan's.
boots: how many times the image is booted (full: 3 by default, --quick with --kernel yes: 1); each
boot measures every row of the guest (inguest.py: both series and every mechanism the host has),
with its own seed (plan.seed + 1000 * boot), and guest.pool_boots pools them. The host part runs once.
"""

from __future__ import annotations

import os
import platform
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm  # type: ignore[import-untyped]

from bpffs_sync.measure.report import (
    compiled,
    equal,
    guest,
    knob,
    measures,
    netlink_check,
    render_scrape,
    scrape,
    stats,
    usability,
)
from bpffs_sync.measure.report.bed import Bed, open_bed
from bpffs_sync.measure.report.mechanisms import churned, knob_mechanisms, read_mechanisms


@dataclass(frozen=True, slots=True)
class Plan:
    quick: bool
    kernel: str  # auto | yes | no
    n_c: int
    n_py: int
    n_mkdir: int
    populate: tuple[int, ...]
    cost_n: int
    mem_n: int
    rounds: int  # read rounds: n_c and n_py are split over them, mechanisms interleaved
    seed: int  # of the per-round shuffles of the mechanisms' order (recorded: meta.plan)
    boots: int = 1  # guest boots of the patched image (pooled)

    @classmethod
    def make(cls, quick: bool, kernel: str, seed: int | None = None, boots: int | None = None) -> Plan:
        seed = secrets.randbits(32) if seed is None else seed
        if quick:  # CI's budget is a minute on a loaded 2-core host: 53 s at load 6 with 10000 C reads and
            # populate up to 10000 (2026-12-07); 5000 reads a mechanism still give intervals well under 1 %.
            # With the knob, scrape and guest-rows steps added: 72.5 s at load 7 with populate up to 3000
            # and 100 mkdirs, so populate stops at 1000 and mkdir cost takes 60 (2026-12-07)
            return cls(True, kernel, 5000, 2000, 60, (100, 1000), 1000, 1000, 5, seed, boots or 1)
        return cls(False, kernel, 50000, 10000, 300, (100, 1000, 10000), 2000, 5000, 10, seed, boots or 3)


def _git(*args: str) -> str:
    proc = subprocess.run(["git", "-C", str(compiled.REPO), *args], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "unknown (not a git checkout)"


def _cpu() -> dict[str, Any]:
    model, flags = platform.machine(), ""
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name") and model == platform.machine():
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line
    return {"model": model, "count": os.cpu_count() or 0, "hypervisor": " hypervisor" in flags,
            "emulated": "QEMU" in model or "TCG" in model}


def meta(plan: Plan) -> dict[str, Any]:
    return {
        "kernel": platform.release(), "cpu": _cpu(), "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "commit": _git("rev-parse", "HEAD"), "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")
                                                         .strip() not in ("", "unknown (not a git checkout)")),
        "python": platform.python_version(), "plan": asdict(plan),
        "stats": {"bootstrap": "percentile", "replicates": stats.BOOT, "level": stats.LEVEL, "seed": stats.SEED},
    }


def _patched(plan: Plan, out_dir: Path, on_progress: Callable[[str], None]) -> dict[str, Any]:
    if plan.kernel == "no":
        return stats.not_measured("patched kernel not booted (--kernel no)")
    if plan.kernel == "auto" and plan.quick:
        return stats.not_measured("--quick does not boot the patched kernel (use --kernel yes)")
    if not guest.RUN_GUEST.is_file():  # an install carries the lab, not the kernel series and their scripts
        return stats.not_measured(f"no {guest.RUN_GUEST.relative_to(compiled.REPO)} here: the patched-kernel rows "
                                  "run from a checkout")
    if guest.choose() is None:
        if plan.kernel == "auto":
            return stats.not_measured(f"no built kernel at {guest.BOTH.bzimage} "
                                      "(kernel-approach2/scripts/build.sh, or --kernel yes)")
        failed = guest.build()
        if failed:
            return stats.not_measured(failed)
    return guest.run_boots(out_dir, "quick" if plan.quick else "full", plan.boots, plan.seed, on_progress)


def _netlink_check(bed: Bed) -> dict[str, Any]:
    """netlink_check.check under one of the bed's cgroup-v1 cgroups (taskstats takes only v1)."""
    parent = next((bed.v1[c] for c in ("cpu", *bed.v1) if c in bed.v1), None)
    if parent is None:
        return stats.not_measured("no cgroup-v1 hierarchy on this host (taskstats' CGROUPSTATS takes only v1)")
    return netlink_check.check(parent)


def run(out_dir: Path, plan: Plan) -> dict[str, Any]:
    started = time.monotonic()
    tools = compiled.build()
    doc: dict[str, Any] = {"meta": meta(plan)}
    steps: list[tuple[str, Callable[[], None]]] = []
    bar = tqdm(total=0, file=sys.stderr, unit="step", dynamic_ncols=True, leave=True)

    def step(name: str, fn: Callable[[], None]) -> None:
        bar.set_description(name)
        fn()
        bar.update(1)

    with open_bed(tools) as bed:
        reads, knobs = read_mechanisms(bed), knob_mechanisms(bed)
        doc["mechanisms"] = [{"key": m.key, "label": m.label, "kind": m.kind, "what": m.what, "missing": m.missing,
                              "variant": m.variant} for m in [*reads, *knobs]]
        orders = {what: measures.round_orders([m.key for m in ms], plan.rounds, plan.seed + i)
                  for i, (what, ms) in enumerate((("read", reads), ("knobs", knobs), ("churn", churned(reads))))}
        mk_orders = measures.round_orders(measures.MKDIR_KEYS, plan.n_mkdir, plan.seed + 3)
        doc["meta"]["order"] = {"seed": plan.seed, "rounds": orders, "mkdir_readable": mk_orders}
        routed = [m for m in reads if m.variant or m.key == "cpu_stat"]  # the routes, and the baseline
        orders["breakdown"] = measures.round_orders([m.key for m in routed], plan.rounds, plan.seed + 6)
        steps += [
            ("equal work check", lambda: doc.__setitem__("equal_work", equal.run(bed, reads))),
            ("netlink check", lambda: doc.__setitem__("netlink_check", _netlink_check(bed))),
            ("read (interleaved rounds)", lambda: doc.__setitem__(
                "read", measures.read_costs(bed, reads, plan.n_c, plan.n_py, orders["read"]))),
            ("per-syscall breakdown", lambda: doc.__setitem__(
                "breakdown", measures.breakdown(bed, routed, plan.n_c // 4, orders["breakdown"]))),
            ("knobs (interleaved rounds)", lambda: doc.__setitem__(
                "knobs", measures.read_costs(bed, knobs, plan.n_c, plan.n_py, orders["knobs"]))),
            ("knobs where they are read", lambda: doc.__setitem__("knob", knob.run(
                tools.readloop, bed.layout.cgroup_root, bed.layout.bpffs, n_read=plan.n_c // 2,
                n_write=plan.n_c // 5, rounds=plan.rounds, seed=plan.seed + 7))),
            ("under churn", lambda: doc.__setitem__(
                "churn", measures.under_churn(bed, churned(reads), plan.n_c, orders["churn"]))),
            ("mkdir -> readable",
             lambda: doc.__setitem__("mkdir_readable", measures.mkdir_readable(bed, mk_orders))),
            ("mkdir/rmdir cost", lambda: doc.__setitem__(
                "mkdir_cost", measures.mkdir_cost(bed, plan.cost_n, 2, plan.seed + 4))),
            ("memory", lambda: doc.__setitem__("memory", measures.memory(bed, plan.mem_n))),
            ("usability", lambda: doc.__setitem__("usability", usability.as_json(usability.table(bed, reads)))),
            ("scrape N cgroups", lambda: doc.__setitem__("scrape", (sc := scrape.run(bed, plan.quick, plan.seed + 5))
                                                         | {"summary": render_scrape.summary(sc)})),
        ]
        bar.total = len(steps) + len(plan.populate) + 2
        for name, fn in steps:
            step(name, fn)
    doc["populate"] = []
    for n in plan.populate:
        step(f"populate {n}", lambda n=n: doc["populate"].append(measures.populate(tools.readloop, n)))  # type: ignore[misc]
    step("kernel LOC", lambda: doc.__setitem__("loc", measures.kernel_loc()))
    step("patched kernel (guest)", lambda: doc.__setitem__("patched", _patched(
        plan, out_dir, lambda line: bar.set_postfix_str(line[:60], refresh=True))))
    bar.close()
    doc["meta"]["duration_s"] = time.monotonic() - started
    return doc
