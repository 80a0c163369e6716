#!/usr/bin/env bash
# Approach 2 end to end: build the comparison image carrying both series (build.sh) -> boot it
# under virtme-ng (kernel-approach1/scripts/run-guest.sh --variant a2) -> kernel-approach2/tests
# inside, with the selftests the image's series add (selftests.sh: both series' test_progs).
# Usage: test.sh [--alone|--debug] [--bench] [--a1] [PYTEST ARGS | BENCH ARGS...]
#   --alone  Approach 2 as posted, alone on pristine 7.3 (build.sh alone, tree build-a2-alone)
#   --a1     also run kernel-approach1/tests, in a second boot of the same image beside the first
#            (one image carries both series)
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
progs= bpftool=  # the image's selftests (A2's 9/9, A1's 14/15) and A1's bpftool (its 15/15)
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
guest_run() {  # guest_run CMD...: one boot of the image running CMD
	"$repo/kernel-approach1/scripts/run-guest.sh" --variant "$guest" --mem "$mem" \
		env BPFFS_SYNC_TEST_PROGS="$progs" BPFFS_SYNC_BPFTOOL="$bpftool" "$@"
}
set +e
if [[ -n $bench ]]; then
	guest_run "$repo/.venv/bin/python" "$here/bench/bench_a2.py" --out "$BPFFS_SYNC_GUEST_OUT/bench_a2.json" "$@"
	rc=$?
elif [[ -n $a1 ]]; then
	# Both suites, two boots side by side (each tests/ directory has its own conftest.py): the guest
	# is single-threaded TCG (run-guest.sh), so a boot runs on one host core and the two together
	# take as long as the longer one. Each boot's results in $BPFFS_SYNC_GUEST_OUT/a2 and /a1, its
	# output in a2.log and a1.log there, printed when both are done.
	suite() {  # suite NAME TESTS_DIR [PYTEST ARGS]
		local name=$1 dir=$2
		shift 2
		mkdir -p "$BPFFS_SYNC_GUEST_OUT/$name"
		BPFFS_SYNC_GUEST_OUT=$BPFFS_SYNC_GUEST_OUT/$name guest_run "${pytest[@]}" \
			--junitxml "$BPFFS_SYNC_GUEST_OUT/$name/junit.xml" "$dir" "$@" >"$BPFFS_SYNC_GUEST_OUT/$name.log" 2>&1
	}
	suite a2 "$here/tests" "$@" &
	a2_pid=$!
	suite a1 "$repo/kernel-approach1/tests" &
	a1_pid=$!
	wait "$a2_pid"
	a2_rc=$?
	wait "$a1_pid"
	a1_rc=$?
	for s in a2 a1; do
		echo "=== Approach ${s#a}'s suite (kernel-approach${s#a}/tests) ==="
		cat "$BPFFS_SYNC_GUEST_OUT/$s.log"
	done
	echo "kernel-a2-test: Approach 2's suite rc $a2_rc, Approach 1's rc $a1_rc" >&2
	rc=$((a2_rc != 0 ? a2_rc : a1_rc))
else
	guest_run "${pytest[@]}" --junitxml "$BPFFS_SYNC_GUEST_OUT/junit.xml" "$here/tests" "$@"
	rc=$?
fi
set -e
echo "kernel-a2-test: guest run took $(($(date +%s) - start)) s, results in $BPFFS_SYNC_GUEST_OUT" >&2
exit $rc
