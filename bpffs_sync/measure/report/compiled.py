"""Build the report's compiled parts at run time (bpffs_sync/measure/toolchain.py says where from and to:
build/report/ in a checkout, a per-user cache from an install), rebuilt when a source is newer:

- readloop: the C loop (bench/report/readloop.c), with gcc (cc as fallback), linked to libbpf;
- stat_by_id.bpf.o: the BPF_PROG_TYPE_SYSCALL programs (stat_by_id: the raw struct; stat_text: the
  full text), the total_ns-only iterator reader (total_only) and the knob map (bench/report/bpf/),
  with clang against `make bpf`'s vmlinux.h, else one generated from this kernel's BTF with bpftool.
A missing compiler, header or BTF is an EnvironmentProblem: one line, exit 2.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bpffs_sync.measure import toolchain

REPO = toolchain.CHECKOUT  # the kernel series and git provenance: a checkout's only


@dataclass(frozen=True, slots=True)
class Tools:
    readloop: str
    bpf_object: str


def build() -> Tools:
    out = toolchain.build_dir("report")
    clang = toolchain.tool(os.environ.get("CLANG", "clang"), why="stat_by_id.bpf.o")
    loop = toolchain.compile_c("readloop", "report")
    vmlinux = toolchain.vmlinux_h(out)
    bpf_src, common = toolchain.source("stat_by_id.bpf.c"), toolchain.source("stat_common.h")
    bpf_obj = out / "stat_by_id.bpf.o"
    if toolchain.stale(bpf_obj, [bpf_src, common, vmlinux]):
        toolchain.run([clang, "-g", "-O2", "-Wall", "-Werror", "-target", "bpf", "-D__TARGET_ARCH_x86",
                       f"-I{vmlinux.parent}", f"-I{common.parent}", "-c", str(bpf_src), "-o", str(bpf_obj)],
                      str(bpf_src))
    return Tools(readloop=loop, bpf_object=str(bpf_obj))
