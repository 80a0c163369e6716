"""Build the report's native parts at run time, into build/report/ (rebuilt when a source is newer):

- readloop: the C loop (bench/report/readloop.c), with gcc (cc as fallback), linked to libbpf;
- stat_by_id.bpf.o: the BPF_PROG_TYPE_SYSCALL program and knob map (bench/report/bpf/), with
  clang against build/bpf/vmlinux.h (made by `make bpf`).
A missing compiler or header is an EnvironmentProblem: one line, exit 2.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bpffs_sync.errors import EnvironmentProblem
from bpffs_sync.programs import object_dir

REPO = Path(__file__).resolve().parents[3]
SRC = REPO / "bench" / "report"


@dataclass(frozen=True, slots=True)
class Tools:
    readloop: str
    bpf_object: str


def _stale(target: Path, sources: list[Path]) -> bool:
    return not target.exists() or any(s.stat().st_mtime > target.stat().st_mtime for s in sources)


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise EnvironmentProblem("build", what, 0, f"{cmd[0]} failed: {last}")


def build(out_dir: Path | None = None) -> Tools:
    out = out_dir or REPO / "build" / "report"
    out.mkdir(parents=True, exist_ok=True)
    vmlinux = object_dir() / "vmlinux.h"
    if not vmlinux.is_file():
        raise EnvironmentProblem("build", str(vmlinux), 0, "missing (run `make bpf`)")
    cc = shutil.which("gcc") or shutil.which("cc")
    clang = shutil.which(os.environ.get("CLANG", "clang"))
    if cc is None or clang is None:
        raise EnvironmentProblem("build", "readloop", 0, "needs gcc (or cc) and clang (run `make deps`)")
    loop_src, loop = SRC / "readloop.c", out / "readloop"
    if _stale(loop, [loop_src]):
        _run([cc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(loop), str(loop_src), "-lbpf"], str(loop_src))
    bpf_src, bpf_obj = SRC / "bpf" / "stat_by_id.bpf.c", out / "stat_by_id.bpf.o"
    common = REPO / "bpf" / "stat_common.h"
    if _stale(bpf_obj, [bpf_src, common, vmlinux]):
        _run([clang, "-g", "-O2", "-Wall", "-Werror", "-target", "bpf", "-D__TARGET_ARCH_x86",
              f"-I{object_dir()}", f"-I{REPO / 'bpf'}", "-c", str(bpf_src), "-o", str(bpf_obj)], str(bpf_src))
    return Tools(readloop=str(loop), bpf_object=str(bpf_obj))
