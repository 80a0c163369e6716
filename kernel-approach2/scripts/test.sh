#!/usr/bin/env bash
# Approach 2 end to end: build the comparison image carrying both series (build.sh) -> boot it
# under virtme-ng (kernel-approach1/scripts/run-guest.sh --variant a2) -> kernel-approach2/tests
# inside, with the selftests the image's series add (selftests.sh: both series' test_progs).
# Usage: test.sh [--alone|--debug] [--bench] [--a1] [PYTEST ARGS | BENCH ARGS...]
#   --alone  Approach 2 as posted, alone on pristine 7.3 (build.sh alone, tree build-a2-alone)
#   --a1     also run kernel-approach1/tests in the same boot (one image carries both series)
#   --debug  the debug config (lockdep, KASAN, kmemleak; tree build-a2-debug, 4G guest)
#   --bench  run bench/bench_a2.py instead (JSON to $BPFFS_SYNC_GUEST_OUT/bench_a2.json)
# Results: JUnit XML, output and the guest's dmesg in $BPFFS_SYNC_GUEST_OUT (default: a temp dir).
# Fails when a test fails or the guest's dmesg shows WARNING/BUG/Oops/KASAN/lockdep/kmemleak.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
bench= a1= variant=plain guest=a2 mem=2G
while [[ $# -gt 0 ]]; do
	case $1 in
	--bench) bench=1; shift ;;
	--a1) a1=1; shift ;;
	--debug) variant=debug guest=a2-debug mem=4G; shift ;;
	--alone) variant=alone guest=a2-alone; shift ;;
	*) break ;;
	esac
done

kernel=$("$here/scripts/build.sh" "$variant")
tree=$(dirname "$(dirname "$(dirname "$(dirname "$kernel")")")")
make -s -C "$repo" bpf
progs= bpftool=  # the image's selftests (A2's 9/9, A1's 10/11) and A1's bpftool (its 11/11)
if [[ -z $bench ]]; then
	progs=$("$repo/kernel-approach1/scripts/selftests.sh" "$tree")
fi
if [[ -n $a1 && -z $bench ]]; then
	[[ $variant != alone ]] || { echo "test.sh: --a1 needs the comparison image, not --alone" >&2; exit 2; }
	bpftool=$("$repo/kernel-approach1/scripts/bpftool.sh" "$tree")
fi

export BPFFS_SYNC_GUEST_OUT=${BPFFS_SYNC_GUEST_OUT:-$(mktemp -d /tmp/bpffs-sync-a2-test.XXXXXX)}
start=$(date +%s)
pytest=("$repo/.venv/bin/pytest" -q -p no:cacheprovider --rootdir "$repo" -c "$repo/pyproject.toml")
if [[ -n $bench ]]; then
	cmd=("$repo/.venv/bin/python" "$here/bench/bench_a2.py" --out "$BPFFS_SYNC_GUEST_OUT/bench_a2.json" "$@")
elif [[ -n $a1 ]]; then
	# two sessions: each tests/ directory has its own conftest.py
	cmd=(bash -c "$(printf '%q ' "${pytest[@]}" --junitxml "$BPFFS_SYNC_GUEST_OUT/junit-a2.xml" "$here/tests" "$@");
		rc=\$?; $(printf '%q ' "${pytest[@]}" --junitxml "$BPFFS_SYNC_GUEST_OUT/junit-a1.xml" "$repo/kernel-approach1/tests");
		exit \$((rc | \$?))")
else
	cmd=("${pytest[@]}" --junitxml "$BPFFS_SYNC_GUEST_OUT/junit.xml" "$here/tests" "$@")
fi
set +e
"$repo/kernel-approach1/scripts/run-guest.sh" --variant "$guest" --mem "$mem" \
	env BPFFS_SYNC_TEST_PROGS="$progs" BPFFS_SYNC_BPFTOOL="$bpftool" "${cmd[@]}"
rc=$?
set -e
echo "kernel-a2-test: guest run took $(($(date +%s) - start)) s, results in $BPFFS_SYNC_GUEST_OUT" >&2
exit $rc
