"""The patched-kernel rows, host side: pick the image, boot it once, read back what the guest measured.

The image: $BPFFS_SYNC_KCACHE/build-a2 (kernel-approach2/scripts/build.sh: Approach 1 + Approach 2
in ONE image, so one boot measures both) when it is built, else build-plain (Approach 1 only;
the Approach 2 rows then say so). `--kernel yes` builds build-a2 first when it is absent.

Which image booted is recorded, not assumed (image_identity()): the bzImage's path, sha256 and
embedded version string, its tree's HEAD commit, series subjects (baseline..HEAD) and whether
the tree had uncommitted changes or a build under way, read just before the boot (the tree's HEAD
need not be what the image was built from); the guest reports `uname -r -v` and probes its BTF
for the series it carries, and `booted_matches_image` says whether that is the version string of
the image we recorded (another engineer's build may replace the image at any time).

The boot: kernel-approach1/scripts/run-guest.sh --variant a2|plain (TCG: no KVM here) running
`python -m bpffs_sync.measure.report.inguest` with the tree's libbpf; results come back through
its --rwdir (<out>/guest/). No image, a failed boot or a failed part: the rows say
"not measured: <reason>", never a number.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bpffs_sync.measure.report import stats
from bpffs_sync.measure.report.compiled import REPO

CACHE = Path(os.environ.get("BPFFS_SYNC_KCACHE", "/var/cache/bpffs-sync/kernel"))
GUEST_JSON = "report-guest.json"
RUN_GUEST = REPO / "kernel-approach1" / "scripts" / "run-guest.sh"
BUILD_A2 = REPO / "kernel-approach2" / "scripts" / "build.sh"


@dataclass(frozen=True, slots=True)
class Image:
    variant: str  # run-guest.sh --variant: a2 (both series) | plain (Approach 1 only)
    tree: Path

    @property
    def bzimage(self) -> Path:
        return self.tree / "arch" / "x86" / "boot" / "bzImage"

    @property
    def series(self) -> str:
        return "Approach 1 + Approach 2" if self.variant == "a2" else "Approach 1 only"


BOTH = Image("a2", CACHE / "build-a2")
A1_ONLY = Image("plain", CACHE / "build-plain")


def choose() -> Image | None:
    """The image carrying both series when built, else Approach 1's, else None."""
    return next((im for im in (BOTH, A1_ONLY) if im.bzimage.is_file()), None)


def build() -> str | None:
    """kernel-approach2/scripts/build.sh (both series; its progress goes to our stderr). None when
    built, else why not."""
    proc = subprocess.run([str(BUILD_A2)], stdout=subprocess.DEVNULL, check=False)
    if proc.returncode != 0 or not BOTH.bzimage.is_file():
        return f"kernel build failed (kernel-approach2/scripts/build.sh exit {proc.returncode})"
    return None


# --- which image ---------------------------------------------------------------------------------


def bzimage_version(path: Path) -> str:
    """The version string the x86 boot header points at (what `file` prints after 'version')."""
    with open(path, "rb") as f:
        head = f.read(0x10000)
    if head[0x202:0x206] != b"HdrS":
        return "unknown (no x86 boot header)"
    (ptr,) = struct.unpack_from("<H", head, 0x20E)
    return head[ptr + 0x200:ptr + 0x400].split(b"\0")[0].decode(errors="replace")


def _git(tree: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def build_running(im: Image) -> bool:
    """Is a build of this tree under way (its build script holds <cache>/build-<tree>.lock)? The
    lock is only tested, never waited for: a build can take most of an hour."""
    lock = im.tree.parent / f"{im.tree.name}.lock"
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # drops our lock, if we got it
    return False


def image_identity(im: Image) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(im.bzimage, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    st = im.bzimage.stat()
    return {
        "path": str(im.bzimage), "variant": im.variant, "series": im.series, "sha256": h.hexdigest(),
        "version": bzimage_version(im.bzimage), "built": time.strftime("%F %T %z", time.localtime(st.st_mtime)),
        "tree_commit": _git(im.tree, "rev-parse", "HEAD") or "unknown (not a git tree)",
        "tree_patches": _git(im.tree, "log", "--format=%s", "baseline..HEAD").splitlines()[::-1],
        "tree_dirty": bool(_git(im.tree, "status", "--porcelain", "--untracked-files=no")),
        "build_running": build_running(im),
    }


def matches(identity: dict[str, Any], guest: dict[str, Any]) -> bool:
    """Is the guest's `uname -r` + `uname -v` the version string of the recorded image?"""
    v = str(identity.get("version", ""))
    return v.startswith(f"{guest.get('kernel')} ") and v.endswith(str(guest.get("version")))


# --- the boot ------------------------------------------------------------------------------------


def _libbpf(im: Image) -> Path:
    """The tree's libbpf (the series' uapi); built once, as kernel-approach2/scripts/test.sh does."""
    lib = im.tree / "tools" / "lib" / "bpf"
    if not (lib / "libbpf.so.1").exists():
        subprocess.run(["make", "-s", "-C", str(lib)], stdout=subprocess.DEVNULL, check=False)
    return lib


def run_guest(out_dir: Path, mode: str, on_progress: Callable[[str], None] | None = None, *,
              seed: int | None = None, sub: str = "guest") -> dict[str, Any]:
    """One boot of the chosen image running inguest.py with plan `mode` (inguest.GuestPlan.make) and
    `seed` (its interleaved orders), in <out_dir>/<sub>/. Returns its JSON (plus the image's
    identity) or a not_measured entry."""
    im = choose()
    if im is None:
        return stats.not_measured(f"no built kernel at {BOTH.bzimage} or {A1_ONLY.bzimage} "
                                  "(kernel-approach2/scripts/build.sh, or --kernel yes)")
    guest_dir = out_dir / sub
    guest_dir.mkdir(parents=True, exist_ok=True)
    for stale in (GUEST_JSON, "progress", "bench_a2.json"):
        (guest_dir / stale).unlink(missing_ok=True)
    identity = image_identity(im)
    # The guest does not inherit our environment: what it needs goes on its command line.
    # nice: a TCG boot keeps a host core busy for its whole run (house rule: CPU-heavy work at nice 10)
    cmd = ["nice", "-n", "10", str(RUN_GUEST), "--variant", im.variant, "--mem", "2G", "env",
           f"LD_LIBRARY_PATH={_libbpf(im)}", f"BPFFS_SYNC_GUEST_OUT={guest_dir}", sys.executable, "-m",
           "bpffs_sync.measure.report.inguest",
           str(guest_dir / GUEST_JSON), "--plan", mode, *(["--seed", str(seed)] if seed is not None else [])]
    env = {**os.environ, "BPFFS_SYNC_GUEST_OUT": str(guest_dir),
           "BPFFS_SYNC_GUEST_TIMEOUT": os.environ.get("BPFFS_SYNC_GUEST_TIMEOUT", "7200" if mode == "full" else "3600")}
    started = time.monotonic()
    with open(guest_dir / "run-guest.log", "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            time.sleep(2)
            if on_progress is not None:
                on_progress(_last_line(guest_dir / "progress"))
    wall = time.monotonic() - started
    path = guest_dir / GUEST_JSON
    if not path.is_file():
        last = _last_line(guest_dir / "run-guest.log") or f"exit {proc.returncode}"
        return stats.not_measured(f"the guest run gave no results ({last[:120]}; logs in {guest_dir})")
    doc: dict[str, Any] = json.loads(path.read_text())
    if doc.get("incomplete"):  # the guest wrote what it had finished, then stopped (its timeout, a crash)
        last = _last_line(guest_dir / "progress")
        doc["incomplete"] = f"{doc['incomplete']} (last step: {last[:100]}; exit {proc.returncode})"
        for part in ("stock", "bench_a2"):
            doc.setdefault(part, stats.not_measured(doc["incomplete"]))
    doc.update(image=identity, booted_matches_image=matches(identity, doc), guest_exit=proc.returncode,
               wall_s=wall, emulated=True)  # run-guest.sh boots with --disable-kvm: TCG
    return doc


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


# --- several boots -------------------------------------------------------------------------------

BOOT_KEYS = ("kernel", "version", "date", "seed", "wall_s", "guest_run_s", "guest_exit", "booted_matches_image",
             "incomplete")


def boot_record(i: int, doc: dict[str, Any]) -> dict[str, Any]:
    """What the report keeps of one boot beside the pooled figures: who, when, how long, its seed."""
    if not stats.is_measured(doc):
        return {"boot": i, "not_measured": doc.get("not_measured", "no result")}
    return {"boot": i, **{k: doc.get(k) for k in BOOT_KEYS}, "image_sha256": doc.get("image", {}).get("sha256"),
            "order": doc.get("stock", {}).get("order") if isinstance(doc.get("stock"), dict) else None}


def pool_boots(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The boots' documents as the one the report renders (pool.pool), with "boots" (boot_record of
    each) and "spread" (pool.spread: each boot's median per series). Only boots of the first measured
    boot's image are pooled: a boot of another image (a build replaced it between boots) is kept in
    "boots" with why it was left out. Figures derived from samples (bench_a2's mkdir medians, the
    stall's worst) are computed again from the pooled samples."""
    from bpffs_sync.measure.report import pool

    records = [boot_record(i, d) for i, d in enumerate(docs)]
    measured = [(i, d) for i, d in enumerate(docs) if stats.is_measured(d)]
    if not measured:
        first = dict(docs[0]) if docs else stats.not_measured("no boot ran")
        return first | {"boots": records}
    sha = measured[0][1].get("image", {}).get("sha256")
    same = [d for i, d in measured if d.get("image", {}).get("sha256") == sha]
    for i, d in measured:
        if d.get("image", {}).get("sha256") != sha:
            other = str(d.get("image", {}).get("sha256"))[:16]
            records[i]["left_out"] = f"another image (sha256 {other}) than the first measured boot's"
    out: dict[str, Any] = pool.pool(same)
    cost = stats.dig(out, "stock", "mkdir_cost")
    if stats.is_measured(cost) and "cgroups" in cost:  # its samples are every boot's cgroups
        cost["cgroups"] = sum(int(stats.dig(d, "stock", "mkdir_cost", "cgroups") or 0) for d in same)
    out.update(booted_matches_image=all(bool(d.get("booted_matches_image")) for d in same),
               guest_exit=next((d.get("guest_exit") for d in same if d.get("guest_exit") != 0), 0),
               wall_s=sum(float(d.get("wall_s", 0)) for d in same),
               guest_run_s=sum(float(d.get("guest_run_s", 0)) for d in same),
               boots=records, pooled_boots=len(same), spread=pool.spread(same))
    _rederive(out)
    return out


def _rederive(doc: dict[str, Any]) -> None:
    """bench_a2's mkdir medians and the stall's worst, from the pooled samples (pool() took medians
    of the boots' figures)."""
    from bpffs_sync.measure.report.inguest import mkdir_summary

    b = doc.get("bench_a2")
    if not stats.is_measured(b):
        return
    mk = b.get("mkdir")
    if stats.is_measured(mk) and isinstance(mk.get("samples_ns"), dict):
        b["mkdir"] = mkdir_summary(mk["samples_ns"], int(mk.get("rounds", 0))) | \
            {k: mk[k] for k in ("order", "seed") if k in mk}
    st = b.get("stall")
    if stats.is_measured(st) and st.get("idle_samples_ns"):
        st["idle_worst_ms"] = max(st["idle_samples_ns"]) / 1e6
        for ap in ("a1", "a2"):
            during = st.get(f"{ap}_samples_ns")
            if during:
                st[f"{ap}_worst_ms"] = max(during) / 1e6
                st[f"{ap}_overlapping"] = len(during)
                st[f"{ap}_vs_idle"] = st[f"{ap}_worst_ms"] / st["idle_worst_ms"]


def run_boots(out_dir: Path, mode: str, boots: int, seed: int,
              on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """`boots` boots of the image, boot i with seed + 1000 * i, in <out>/guest/boot<i>/; pooled
    (pool_boots). One boot is that boot's document, with its record."""
    docs = []
    for i in range(boots):
        def progress(line: str, i: int = i) -> None:
            if on_progress is not None:
                on_progress(f"boot {i + 1}/{boots}: {line}")
        docs.append(run_guest(out_dir, mode, progress, seed=seed + 1000 * i, sub=f"guest/boot{i}"))
    return pool_boots(docs)
