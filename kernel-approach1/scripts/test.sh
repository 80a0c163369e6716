#!/usr/bin/env bash
# The kernel series end to end: fetch -> apply -> build -> boot -> in-guest tests.
# Usage: test.sh [--variant plain|debug] [--bench] [PYTEST ARGS | BENCH ARGS...]
#
# The guest runs kernel-approach1/tests with the host's venv and the system libbpf: bpffs-sync
# sets the program type itself and makes the series' link with a raw bpf(2), so it needs nothing
# newer (the guest could not see the tree's libbpf anyway: its /var/cache is a tmpfs). The series'
# libbpf patch is exercised by its selftests: selftests.sh builds their test_progs and
# tests/test_selftests.py runs it in the same boot; bpftool.sh builds the tree's bpftool, which
# tests/test_bpftool.py runs there. Results: JUnit XML, the tests' output and the
# guest's dmesg in $BPFFS_SYNC_GUEST_OUT (default: a temp dir).
# Fails when a test fails or the guest's dmesg shows WARNING/BUG/Oops/KASAN/lockdep/kmemleak.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
variant=plain mem=2G bench=
if [[ ${1:-} == --variant ]]; then
	variant=$2
	shift 2
fi
if [[ ${1:-} == --bench ]]; then
	bench=1
	shift
fi
[[ $variant == debug ]] && mem=4G

kernel=$("$here/scripts/build.sh" "$variant")
tree=$(dirname "$(dirname "$(dirname "$(dirname "$kernel")")")")
make -s -C "$repo" bpf
progs= bpftool=
if [[ -z $bench ]]; then
	progs=$("$here/scripts/selftests.sh" "$tree")
	bpftool=$("$here/scripts/bpftool.sh" "$tree")
fi

export BPFFS_SYNC_GUEST_OUT=${BPFFS_SYNC_GUEST_OUT:-$(mktemp -d /tmp/bpffs-sync-kernel-test.XXXXXX)}
start=$(date +%s)
if [[ -n $bench ]]; then
	cmd=("$repo/.venv/bin/python" "$here/bench/bench_kernel_mirror.py" "$@")
else
	cmd=("$repo/.venv/bin/pytest" -q -p no:cacheprovider --rootdir "$repo" -c "$repo/pyproject.toml"
		--junitxml "$BPFFS_SYNC_GUEST_OUT/junit.xml" "$here/tests" "$@")
fi
set +e
"$here/scripts/run-guest.sh" --variant "$variant" --mem "$mem" \
	env BPFFS_SYNC_TEST_PROGS="$progs" BPFFS_SYNC_BPFTOOL="$bpftool" "${cmd[@]}"
rc=$?
set -e
echo "kernel-test: guest run took $(($(date +%s) - start)) s, results in $BPFFS_SYNC_GUEST_OUT" >&2
exit $rc
