"""Build the report's compiled parts at run time (bpffs_sync/measure/toolchain.py says where from and to:
build/report/ in a checkout, a per-user cache from an install), rebuilt when a source is newer:

- readloop: the C loop (bench/report/readloop.c), with gcc (cc as fallback), linked to libbpf;
- stat_by_id.bpf.o: the BPF_PROG_TYPE_SYSCALL programs (stat_by_id: the raw struct; stat_text: the
  full text), the total_ns-only iterator reader (total_only) and the knob map (bench/report/bpf/),
  with clang against `make bpf`'s vmlinux.h, else one generated from this kernel's BTF with bpftool;
- bpf_object(): that compile for any report BPF source (scrape.bpf.o too: report/scrape_iter.py).
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


HEADERS = ("stat_common.h", "oncpu_stats.bpf.h")  # what every report BPF source includes


def bpf_object(name: str) -> str:
    """bench/report/bpf/<name>.bpf.c compiled to <name>.bpf.o (CO-RE, clang -target bpf) when it or
    a header it includes is newer."""
    out = toolchain.build_dir("report")
    clang = toolchain.tool(os.environ.get("CLANG", "clang"), why=f"{name}.bpf.o")
    vmlinux = toolchain.vmlinux_h(out)
    src = toolchain.source(f"{name}.bpf.c")
    headers = [toolchain.source(h) for h in HEADERS]
    obj = out / f"{name}.bpf.o"
    if toolchain.stale(obj, [src, *headers, vmlinux]):
        includes = [f"-I{d}" for d in dict.fromkeys([vmlinux.parent, *(h.parent for h in headers)])]
        toolchain.run([clang, "-g", "-O2", "-Wall", "-Werror", "-target", "bpf", "-D__TARGET_ARCH_x86",
                       *includes, "-c", str(src), "-o", str(obj)], str(src))
    return str(obj)


def build() -> Tools:
    # The BPF object first, as before 5d7f024: a host without a compiler hears of clang first (the one a
    # host with gcc lacks most often), the message tests/test_packaging.py pins down.
    bpf = bpf_object("stat_by_id")
    return Tools(readloop=toolchain.compile_c("readloop", "report"), bpf_object=bpf)
