#!/usr/bin/env bash
# Build the FULL upstream test_progs of a selftests tree (upstream-selftests.sh) with clang-19, by the
# selftests' own Makefile, unmodified, against the tree's vmlinux (BTF), libbpf, bpftool and Module.symvers
# (bpf_testmod & co. are built against the tree). The pristine and the patched tree build the same
# test_progs sources; the patched one has in addition what the series adds (prog_tests/cgroup_stat.c,
# progs/cgroup_stat.c, progs/cgroup_stat_fail.c) and builds against the series' libbpf.
#
# clang-19: nothing is excluded; what clang-19 (/usr/lib/llvm-19/bin, the newest LLVM of the host's
# registries) needs is a make command-line override (no copy or edit of the Makefile), in
#   upstream-selftests-clang19.sh (why, line by line); BPFFS_SYNC_NO_EXCLUDE=1 builds without it.
# The exact list is written next to the binary (EXCLUDED) and into the table.
#
# OUTPUT is $repo/build/selftests/upstream-<variant> (the guest sees /work, not /var/cache); test_progs
# runs from there (it opens its .bpf.o files and bpf_testmod.ko from its working directory).
# Usage: upstream-selftests-build-tests.sh TREE      prints the OUTPUT directory
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
tree=$(cd "${1:?usage: upstream-selftests-build-tests.sh TREE}" && pwd)
variant=${tree##*/selftests-}
sel=$tree/tools/testing/selftests/bpf
out=$repo/build/selftests/upstream-$variant
llvm=/usr/lib/llvm-19/bin
CACHE=${BPFFS_SYNC_KCACHE:-/var/cache/bpffs-sync/kernel}
export CCACHE_DIR=$CACHE/ccache
[[ -x $llvm/clang ]] || { echo "upstream-selftests: no clang-19 (scripts/install-deps.sh --kernel)" >&2; exit 2; }
[[ -f $tree/vmlinux && -f $tree/Module.symvers ]] || { echo "upstream-selftests: $tree is not built" >&2; exit 2; }
mkdir -p "$out"

# What clang-19 needs, as make command-line overrides (see that file for how they reach
# the libarena sub-make).
exclude=()
excluded=""
if [[ -z ${BPFFS_SYNC_NO_EXCLUDE:-} ]]; then
	. "$here/scripts/upstream-selftests-clang19.sh"
fi
printf '%s\n' "$excluded" >"$out/EXCLUDED"

exec 8>"$tree.lock"
flock 8
start=$(date +%s)
set +e
# ccache for the host compiles (test_progs, libbpf, bpftool, the kmods: the kernel's own sub-make gets
# the same CC) and the BPF ones (clang-19 -target bpf); nice 19 for all of it.
PATH=$llvm:$PATH nice -n 19 make -C "$sel" -j"$(nproc)" OUTPUT="$out" VMLINUX_BTF="$tree/vmlinux" \
	CC="ccache gcc" HOSTCC="ccache gcc" CLANG="ccache $llvm/clang" \
	"${exclude[@]}" "$out/test_progs" >"$out/build.log" 2>&1
rc=$?
set -e
t=$(($(date +%s) - start))
printf '%s %-28s %6d s  (%d min) rc=%d\n' "$(date -u +%FT%TZ)" "test_progs-$variant" "$t" $((t / 60)) "$rc" |
	tee -a "$CACHE/selftests-times.log" >&2
if ((rc != 0)); then
	grep -v -e 'warning: overriding recipe' -e 'warning: ignoring old recipe' "$out/build.log" | grep -B2 -A8 -m5 -i 'error' >&2 || true
	tail -n 15 "$out/build.log" >&2
	echo "upstream-selftests: the test_progs build failed ($rc); log: $out/build.log" >&2
	exit 1
fi
echo "$out"
