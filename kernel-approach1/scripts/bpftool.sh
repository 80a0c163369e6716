#!/usr/bin/env bash
# bpftool of the series' tree (tools/bpf/bpftool with the tree's own libbpf), for
# kernel-approach1/tests/test_bpftool.py in the guest (BPFFS_SYNC_BPFTOOL). The objects go to
# TREE.bpftool, outside the tree, so the tree's work tree is only read; a kernel build of the
# same tree (build.sh holds TREE.lock) is waited for, since its vmlinux may be half written.
# The skeletons (pids, profiler) are CO-RE: vmlinux.h comes from TREE/vmlinux when it is built,
# else from the host's /sys/kernel/btf/vmlinux. clang-19 builds them. The binary is linked
# against the host's shared libraries (libelf, zlib), which the guest shares with the host; it is
# copied where the guest sees it (the guest's /var/cache is a tmpfs).
# Usage: bpftool.sh TREE    prints the path of bpftool
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
tree=$(cd "${1:?usage: bpftool.sh TREE}" && pwd)
src=$tree/tools/bpf/bpftool
out=$tree.bpftool
dest=$repo/build/bpftool/$(basename "$tree")
llvm=/usr/lib/llvm-19/bin
[[ -x $llvm/clang ]] || { echo "bpftool: no clang-19 (scripts/install-deps.sh --kernel)" >&2; exit 2; }
[[ -f $src/Makefile ]] || { echo "bpftool: $tree has no tools/bpf/bpftool" >&2; exit 2; }

if [[ -e $tree.lock ]]; then
	exec 9<"$tree.lock"
	flock -s 9
fi
btf=/sys/kernel/btf/vmlinux
[[ -f $tree/vmlinux ]] && btf=$tree/vmlinux
[[ -e $btf ]] || { echo "bpftool: no vmlinux BTF ($tree/vmlinux or $btf)" >&2; exit 2; }

mkdir -p "$out" "$dest"
set +e
nice -n 10 make -s -C "$src" -j"$(nproc)" OUTPUT="$out/" VMLINUX_BTF="$btf" \
	CLANG="$llvm/clang" LLVM_STRIP="$llvm/llvm-strip" >"$out/build.log" 2>&1
rc=$?
set -e
if ((rc != 0)); then
	tail -n 30 "$out/build.log" >&2
	echo "bpftool: the build failed ($rc); log: $out/build.log" >&2
	exit 1
fi
"$out/bpftool" version >/dev/null || { echo "bpftool: $out/bpftool does not run" >&2; exit 1; }
cp -p "$out/bpftool" "$dest/bpftool"
echo "$dest/bpftool"
