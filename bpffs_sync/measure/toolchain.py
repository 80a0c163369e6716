"""The lab's C and BPF sources and where they are compiled, from a checkout or from an install.

The report and `bench sync` compile small native helpers at run time (bench/report/readloop.c,
bench/report/bpf/stat_by_id.bpf.c with bpf/stat_common.h, bench/c/pinloop.c):

- sources: an installed wheel carries them as package data in bpffs_sync/measure/csrc/ (setup.py's
  build hook copies them there); a checkout (editable install) reads them where they live in the tree.
- outputs: a checkout builds into build/<what>/ as before; an install builds into a cache directory
  ($XDG_CACHE_HOME/bpffs-sync/<what>, else ~/.cache/bpffs-sync/<what>), never into site-packages.
- vmlinux.h: `make bpf`'s (next to the BPF objects) when there is one, else generated into the output
  directory with `bpftool btf dump file /sys/kernel/btf/vmlinux format c`.

A missing tool, header or BTF is an EnvironmentProblem: one line, exit 2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bpffs_sync.errors import EnvironmentProblem
from bpffs_sync.programs import object_dir

CHECKOUT = Path(__file__).resolve().parents[2]
PACKAGED = Path(__file__).resolve().parent / "csrc"  # filled by setup.py in a wheel; absent in a checkout
VMLINUX_BTF = "/sys/kernel/btf/vmlinux"

# Each source's place in a checkout; a wheel carries them all flat in csrc/.
IN_CHECKOUT = {
    "readloop.c": "bench/report/readloop.c",
    "stat_by_id.bpf.c": "bench/report/bpf/stat_by_id.bpf.c",
    "scrape.bpf.c": "bench/report/bpf/scrape.bpf.c",
    "knob_read.bpf.c": "bench/report/bpf/knob_read.bpf.c",
    "oncpu_stats.bpf.h": "bench/report/bpf/oncpu_stats.bpf.h",
    "stat_common.h": "bpf/stat_common.h",
    "pinloop.c": "bench/c/pinloop.c",
}


def installed() -> bool:
    """Running from an install that carries the sources (not from a checkout)."""
    return PACKAGED.is_dir()


def source(name: str) -> Path:
    path = PACKAGED / name if installed() else CHECKOUT / IN_CHECKOUT[name]
    if not path.is_file():
        raise EnvironmentProblem(
            "build",
            str(path),
            0,
            "missing: this install does not carry the lab's sources "
            "(reinstall bpffs-sync from its wheel or run from a checkout)",
        )
    return path


def build_dir(what: str) -> Path:
    """Where `what` (report, bench) is compiled: build/<what> in a checkout, else a per-user cache."""
    if installed():
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bpffs-sync"
    else:
        base = CHECKOUT / "build"
    out = base / what
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EnvironmentProblem("build", str(out), err.errno or 0) from err
    return out


def tool(*names: str, why: str) -> str:
    """The first of `names` on PATH, or one line saying what is missing and what for."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise EnvironmentProblem(
        "build",
        why,
        0,
        f"needs {' or '.join(names)}, not found on PATH (apt-get install clang llvm bpftool gcc "
        "libbpf-dev; `make deps` in a checkout)",
    )


def stale(target: Path, sources: list[Path]) -> bool:
    return not target.exists() or any(s.stat().st_mtime > target.stat().st_mtime for s in sources)


def run(cmd: list[str], what: str) -> None:
    """Run a compiler; a failure is one line: the tool and its last line of output."""
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        raise EnvironmentProblem("build", what, 0, f"{os.path.basename(cmd[0])} failed: {last}")


def compile_c(name: str, what: str) -> str:
    """<name>.c compiled with gcc (cc as fallback) and linked to libbpf into build_dir(what); again when
    the source is newer. Returns the binary's path."""
    src = source(f"{name}.c")
    out = build_dir(what) / name
    if stale(out, [src]):
        cc = tool("gcc", "cc", why=str(src))
        tmp = out.with_name(f".{name}.tmp")
        run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(tmp), str(src), "-lbpf"], str(src))
        tmp.replace(out)
    return str(out)


def vmlinux_h(out_dir: Path) -> Path:
    """A vmlinux.h for CO-RE sources: `make bpf`'s, else this kernel's, generated into out_dir (replaced
    only when the BTF changed, so what depends on it is not rebuilt for nothing)."""
    made = object_dir() / "vmlinux.h"
    if made.is_file():
        return made
    if not os.path.exists(VMLINUX_BTF):
        raise EnvironmentProblem(
            "build",
            VMLINUX_BTF,
            0,
            "missing: the kernel has no BTF to generate vmlinux.h from (CONFIG_DEBUG_INFO_BTF=y)",
        )
    bpftool = tool("bpftool", why="vmlinux.h")
    proc = subprocess.run(
        [bpftool, "btf", "dump", "file", VMLINUX_BTF, "format", "c"], capture_output=True, check=False
    )
    if proc.returncode != 0 or not proc.stdout:
        last = (proc.stderr.decode(errors="replace").strip().splitlines() or ["(no output)"])[-1]
        raise EnvironmentProblem("build", "vmlinux.h", 0, f"bpftool btf dump failed: {last}")
    target = out_dir / "vmlinux.h"
    if not target.is_file() or target.read_bytes() != proc.stdout:
        tmp = out_dir / ".vmlinux.h.tmp"
        tmp.write_bytes(proc.stdout)
        tmp.replace(target)
    return target
