"""The patched-kernel rows: measured inside the series' kernel in one boot, read back on the host.

Host side, run_guest(): boots kernel-approach1's bzImage (kernel-approach1/scripts/run-guest.sh,
TCG: no KVM here) with this module as the command, and reads the JSON it wrote into the --rwdir.
No kernel, a failed boot or a failed measure: the rows say "not measured: <reason>", never a number.

Guest side, `python -m bpffs_sync.measure.report.guest OUT.json [--quick]`:
  a1_file   the Approach 1 file of a busy cgroup: read cost (C loop, Python loop), under churn,
            mkdir -> readable (read right after mkdir returns), slab per file (link over N cgroups)
  a1_bench  kernel-approach1/bench/bench_kernel_mirror.py's bench() over N cgroups: link create
            (= cgroup_mutex hold) vs the user-space first pass, mkdir/rmdir with vs without the
            link, the worst concurrent mkdir during link create vs idle (all in the same boot)
  baseline  cgroupfs cpu.stat read in the same boot, for ratios (TCG: read ratios, not times)
  a2_file   Approach 2 (kernel-approach2): not measured until that series lands
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bpffs_sync.measure.report import stats
from bpffs_sync.measure.report.native import REPO

CACHE = Path(os.environ.get("BPFFS_SYNC_KCACHE", "/var/cache/bpffs-sync/kernel"))
BZIMAGE = CACHE / "build-plain" / "arch" / "x86" / "boot" / "bzImage"
GUEST_JSON = "report-guest.json"
A2_MISSING = "Approach 2 has not landed: no kernel-approach2/ series in this checkout (issue 10)"


# --- host side -----------------------------------------------------------------------------------


def kernel_built() -> bool:
    return BZIMAGE.is_file()


def build_kernel() -> str | None:
    """kernel-approach1/scripts/build.sh plain (its progress goes to our stderr). None when built,
    else the reason it failed."""
    proc = subprocess.run([str(REPO / "kernel-approach1" / "scripts" / "build.sh"), "plain"],
                          stdout=subprocess.DEVNULL, check=False)
    return None if proc.returncode == 0 and kernel_built() else f"kernel build failed (exit {proc.returncode})"


def run_guest(out_dir: Path, quick: bool) -> dict[str, Any]:
    """One boot: this module's guest side under run-guest.sh. Returns its JSON or not_measured."""
    if not kernel_built():
        return stats.not_measured(f"no built kernel at {BZIMAGE} (run `make kernel` or pass --kernel)")
    guest_dir = out_dir / "guest"
    guest_dir.mkdir(parents=True, exist_ok=True)
    tree = CACHE / "build-plain"
    cmd = [str(REPO / "kernel-approach1" / "scripts" / "run-guest.sh"), "--mem", "2G", "env",
           f"LD_LIBRARY_PATH={tree / 'tools' / 'lib' / 'bpf'}", sys.executable, "-m", "bpffs_sync.measure.report.guest",
           str(guest_dir / GUEST_JSON), *(["--quick"] if quick else [])]
    env = {**os.environ, "BPFFS_SYNC_GUEST_OUT": str(guest_dir)}
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    path = guest_dir / GUEST_JSON
    if not path.is_file():
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return stats.not_measured(f"guest run gave no results ({last[:120]}; logs in {guest_dir})")
    doc: dict[str, Any] = json.loads(path.read_text())
    doc["guest_exit"] = proc.returncode
    doc["emulated"] = True  # run-guest.sh boots with --disable-kvm: TCG
    return doc


# --- guest side ----------------------------------------------------------------------------------


def _bench_module() -> Any:
    path = REPO / "kernel-approach1" / "bench" / "bench_kernel_mirror.py"
    spec = importlib.util.spec_from_file_location("bench_kernel_mirror", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _mkdir_readable(fs: str, root: str, n: int) -> dict[str, Any]:
    """mkdir, then read the Approach 1 file of the new cgroup at once (polling if it is not there)."""
    from bpffs_sync.measure.report import measures

    ns, attempts = [], []
    for i in range(n):
        cg = os.path.join(root, f"fresh{i}")
        os.mkdir(cg)
        file = os.path.join(fs, "cgroup", os.path.relpath(cg, "/sys/fs/cgroup"), "hist_oncpu")
        took, tries = measures.first_read(measures.readable_file(file))
        ns.append(took)
        attempts.append(tries)
        os.rmdir(cg)
    return {"summary": stats.summarize_ns(ns), "samples_ns": ns,
            "first_try": sum(1 for a in attempts if a == 1) / len(attempts), "attempts_max": max(attempts)}


def _a1_file(quick: bool) -> dict[str, Any]:
    from bpffs_sync.backends import kernel_a1
    from bpffs_sync.measure.report import measures, native
    from bpffs_sync.measure.report.bed import burn
    from bpffs_sync.paths import Layout
    from bpffs_sync.programs import lookup
    from bpffs_sync.sandbox import make_cgroup_root, mount_bpffs, remove_cgroup_tree, umount_bpffs

    tools = native.build()
    n_c, n_py = (2000, 500) if quick else (20000, 5000)
    cgroup2 = "/sys/fs/cgroup"
    fs = mount_bpffs("cgroup_mirror")
    root = make_cgroup_root("bpffs-sync-report")
    out: dict[str, Any] = {}
    try:
        with kernel_a1.KernelMirror(Layout(fs, cgroup2), lookup("hist_oncpu")) as km:
            busy = os.path.join(root, "busy")
            os.mkdir(busy)
            fd = km.attach(root)
            try:
                burn([busy], 0.3)
                rel = os.path.relpath(busy, cgroup2)
                path = os.path.join(fs, "cgroup", rel, "hist_oncpu")
                cpu_stat = os.path.join(busy, "cpu.stat")

                def parse() -> int:
                    with open(path, encoding="utf-8") as f:
                        return int(f.read().split("total_ns:")[1].split()[0])

                out["read"] = {"c": measures.series(*measures.c_loop(tools.readloop, ["file", path, "total_ns"], n_c)),
                               "py": measures.series(*measures.py_loop(parse, n_py))}
                out["baseline_cpu_stat"] = {
                    "c": measures.series(*measures.c_loop(tools.readloop, ["file", cpu_stat, "usage_usec"], n_c))}
                with measures.churning(tools.readloop, os.path.join(root, "churn")):
                    out["churn"] = measures.series(*measures.c_loop(tools.readloop, ["file", path, "total_ns"], n_c))
                    out["churn_cpu_stat"] = measures.series(
                        *measures.c_loop(tools.readloop, ["file", cpu_stat, "usage_usec"], n_c))
                out["mkdir_readable"] = _mkdir_readable(fs, root, 50 if quick else 500)
            finally:
                os.close(fd)
                kernel_a1.detach_all()
            made = measures.make_tree(root, 1000 if quick else 10000)
            slab0 = measures.slab_bytes()
            fd = km.attach(root)
            out["slab_per_file_bytes"] = (measures.slab_bytes() - slab0) / len(made)
            out["slab_files"] = len(made)
            os.close(fd)
            kernel_a1.detach_all()
            measures.remove_tree(made)
    finally:
        with contextlib.suppress(Exception):
            kernel_a1.detach_all()
        remove_cgroup_tree(root)
        umount_bpffs(fs)
    return out


def guest_main(out: str, quick: bool) -> int:
    doc: dict[str, Any] = {"kernel": platform.release(), "cpu": _cpu_model(), "date": time.strftime("%F %T %z"),
                           "a2_file": stats.not_measured(A2_MISSING)}
    try:
        from bpffs_sync.backends import kernel_a1

        kernel_a1.require_supported()
        doc["a1_file"] = _a1_file(quick)
    except Exception as err:  # every failure becomes the row's reason, on the host too
        doc["a1_file"] = stats.not_measured(f"in the guest: {type(err).__name__}: {err}")
    try:
        bench = _bench_module()
        counts = (100, 1000) if quick else (100, 1000, 10000)
        doc["a1_bench"] = [bench.bench(n, 500 if quick else 2000) for n in counts]
    except Exception as err:
        doc["a1_bench"] = stats.not_measured(f"in the guest: {type(err).__name__}: {err}")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    return 0


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="report: patched-kernel rows, inside the guest")
    ap.add_argument("out")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    return guest_main(args.out, args.quick)


if __name__ == "__main__":
    sys.exit(main())
