#!/usr/bin/env bash
# The kernel series end to end: fetch -> apply -> build -> boot -> in-guest tests.
# Usage: test.sh [--variant plain|debug] [--bench] [PYTEST ARGS | BENCH ARGS...]
#
# The guest runs kernel-approach1/tests with the host's venv and, ahead of the system libbpf,
# the series' own tools/lib/bpf (so SEC("cgroup/stat") is known to libbpf). Results: JUnit XML,
# the tests' output and the guest's dmesg in $BPFFS_SYNC_GUEST_OUT (default: a temp dir).
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
make -s -C "$tree/tools/lib/bpf" >/dev/null
make -s -C "$repo" bpf

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
	env LD_LIBRARY_PATH="$tree/tools/lib/bpf" "${cmd[@]}"
rc=$?
set -e
echo "kernel-test: guest run took $(($(date +%s) - start)) s, results in $BPFFS_SYNC_GUEST_OUT" >&2
exit $rc
