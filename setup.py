"""Build hook: compile the BPF objects (CO-RE) into the wheel, so an installed bpffs-sync needs no compiler.

`pip install .` / `python -m build` run `make bpf-objects` (the same rules and flags as `make bpf`)
and ship build/…/*.bpf.o as bpffs_sync/bpf_objects/. CO-RE relocations let objects built against one
kernel's BTF load on any kernel with BTF that has the fields they read. Building needs clang,
bpftool and libbpf-dev (bpf_helpers.h) and a BTF file: /sys/kernel/btf/vmlinux, or VMLINUX_BTF=<file>.
It also copies the lab's C and BPF sources (bpffs_sync/measure/toolchain.py's IN_CHECKOUT) into
bpffs_sync/measure/csrc/, which the report and `bench sync` compile at run time into a cache directory.
An editable install (`pip install -e`, the development venv) skips this: it uses build/bpf (`make bpf`)
and the sources where they are.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel, get_platform
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
# The same list as bpffs_sync/measure/toolchain.py's IN_CHECKOUT (tests/test_packaging.py checks the wheel).
LAB_SOURCES = ("bench/report/readloop.c", "bench/report/bpf/stat_by_id.bpf.c", "bench/report/bpf/scrape.bpf.c",
               "bench/report/bpf/knob_read.bpf.c", "bench/report/bpf/oncpu_stats.bpf.h", "bpf/stat_common.h",
               "bench/c/pinloop.c")
NEEDS = "clang, bpftool and libbpf-dev (apt-get install clang llvm bpftool libbpf-dev)"


class BuildWithBpf(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        self.copy_lab_sources()
        missing = [tool for tool in ("make", "clang", "bpftool") if shutil.which(tool) is None]
        if missing:
            sys.exit(f"bpffs-sync: error: building the BPF objects needs {NEEDS}; missing: {', '.join(missing)}")
        btf = os.environ.get("VMLINUX_BTF", "/sys/kernel/btf/vmlinux")
        if not os.path.exists(btf):
            sys.exit(f"bpffs-sync: error: no BTF at {btf} to build the BPF objects against (set VMLINUX_BTF=<file>)")
        dest = Path(self.build_lib) / "bpffs_sync" / "bpf_objects"
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="bpffs-sync-bpf-") as out:
            res = subprocess.run(["make", "-s", "-C", str(HERE), "bpf-objects", f"BPF_OUT={out}",
                                  f"VMLINUX_BTF={btf}"], check=False)
            if res.returncode != 0:
                sys.exit(f"bpffs-sync: error: compiling the BPF objects failed (make bpf-objects, exit "
                         f"{res.returncode}); it needs {NEEDS}")
            for obj in sorted(Path(out).glob("*.bpf.o")):
                shutil.copy2(obj, dest / obj.name)

    def copy_lab_sources(self) -> None:
        dest = Path(self.build_lib) / "bpffs_sync" / "measure" / "csrc"
        dest.mkdir(parents=True, exist_ok=True)
        for rel in LAB_SOURCES:
            shutil.copy2(HERE / rel, dest / Path(rel).name)


class PlatformWheel(bdist_wheel):
    """The BPF objects are built for one architecture (-D__TARGET_ARCH_x86, the build host's vmlinux.h):
    the wheel says so in its platform tag (py3-none-linux_x86_64) instead of claiming to run anywhere."""

    def get_tag(self) -> tuple[str, str, str]:
        return "py3", "none", self.plat_name if self.plat_name_supplied else get_platform(self.bdist_dir)


setup(cmdclass={"build_py": BuildWithBpf, "bdist_wheel": PlatformWheel})
