#!/usr/bin/env bash
# The series' upstream-style selftests (its files under tools/testing/selftests/bpf/prog_tests and
# progs), built by the selftests' own Makefile with clang-19 into a test_progs that holds only them:
# the full test_progs of 7.3 does not build with clang-19, bookworm's newest (libarena/src/asan.bpf.c:
# "unsupported atomic operation" in its BPF backend), and compiles all 1041 programs of the tree. So
# TRUNNER_TESTS_DIR and TRUNNER_BPF_PROGS_DIR point at a directory holding the series' files (and
# bpf_misc.h), and the runner's extra files (test kmods, urandom_read, ...) are left out. The binary carries its
# skeletons; it is copied where the guest sees it (the guest's /var/cache is a tmpfs), and
# kernel-approach1/tests/test_selftests.py runs it there (BPFFS_SYNC_TEST_PROGS).
# Usage: selftests.sh TREE    prints the path of test_progs
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
tree=$(cd "${1:?usage: selftests.sh TREE}" && pwd)
sel=$tree/tools/testing/selftests/bpf
out=$tree.selftests
dest=$repo/build/selftests/$(basename "$tree")
llvm=/usr/lib/llvm-19/bin
[[ -x $llvm/clang ]] || { echo "selftests: no clang-19 (scripts/install-deps.sh --kernel)" >&2; exit 2; }

mapfile -t files < <(git -C "$tree" diff --name-only --diff-filter=AM baseline..HEAD -- \
	tools/testing/selftests/bpf/prog_tests tools/testing/selftests/bpf/progs)
((${#files[@]})) || { echo "selftests: the series in $tree adds no selftests" >&2; exit 2; }
mkdir -p "$out/prog_tests" "$out/progs" "$dest"
rm -f "$out"/prog_tests/*.c "$out"/progs/*.c
for f in "${files[@]}"; do
	cp -p "$tree/$f" "$out/${f#tools/testing/selftests/bpf/}"
done
cp -p "$sel/progs/bpf_misc.h" "$out/progs/"
# upstream's libbpf probe test, unmodified: every bpf_prog_type of vmlinux probes as supported
cp -p "$sel/prog_tests/libbpf_probes.c" "$out/prog_tests/"

rel=$(realpath --relative-to="$sel" "$out")  # the Makefile wants these relative to its directory
extra="test_progs.c cgroup_helpers.c trace_helpers.c network_helpers.c testing_helpers.c btf_helpers.c"
extra+=" cap_helpers.c unpriv_helpers.c sysctl_helpers.c netlink_helpers.c jit_disasm_helpers.c io_helpers.c"
extra+=" test_loader.c disasm.c disasm_helpers.c json_writer.c bpftool_helpers.c"
set +e
PATH=$llvm:$PATH make -s -C "$sel" -j"$(nproc)" OUTPUT="$out" VMLINUX_BTF="$tree/vmlinux" \
	TRUNNER_TESTS_DIR="$rel/prog_tests" TRUNNER_BPF_PROGS_DIR="$rel/progs" TRUNNER_EXTRA_SOURCES="$extra" \
	TRUNNER_EXTRA_FILES= LINKED_SKELS= LSKELS= LSKELS_SIGNED= LSKELS_EXTRA= \
	"$out/test_progs" >"$out/build.log" 2>&1
rc=$?
set -e
if ((rc != 0)); then
	grep -v -e 'warning: overriding recipe' -e 'warning: ignoring old recipe' "$out/build.log" | tail -n 30 >&2
	echo "selftests: the test_progs build failed ($rc); log: $out/build.log" >&2
	exit 1
fi
cp -p "$out/test_progs" "$dest/test_progs"
echo "$dest/test_progs"
