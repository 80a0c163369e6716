#!/usr/bin/env bash
# Both series' guest suites on the debug config (lockdep, KASAN, kmemleak, DEBUG_ATOMIC_SLEEP), on the
# one image that carries both (build.sh debug): two boots side by side, one per suite, since a debug
# guest under TCG runs on one host core and is far slower than the plain one (one load of
# hist_oncpu takes about 140 s: the verifier under KASAN in an emulated CPU; the fixtures load it
# once per session, each CLI test's subprocess once per command). Each suite
# runs its files in the order below, the ones aimed at the kernel's concurrency, refcounts and
# rollback first, the CLI last, with -v so a run cut short still says which tests passed; the walk
# tests' trees are a tenth of their size (BPFFS_SYNC_TEST_SCALE=0.1) and a test may take an hour
# (pytest-timeout's 300 s stopped the storm test here). Each run
# fails on a test failure or on any WARNING/BUG/Oops/KASAN/lockdep/kmemleak line in its guest's
# dmesg (kernel-approach1/scripts/run-guest.sh); the console is the live kernel log meanwhile.
# Usage: debug-test.sh [OUT_DIR]     results in OUT_DIR/a1 and OUT_DIR/a2 (default: a temp dir)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
out=${1:-$(mktemp -d /tmp/bpffs-sync-debug-test.XXXXXX)}
mkdir -p "$out/a1" "$out/a2"
kernel=$("$here/scripts/build.sh" debug)  # once, before the two boots share the image
tree=${kernel%/arch/x86/boot/bzImage}
make -s -C "$repo" bpf
progs=$("$repo/kernel-approach1/scripts/selftests.sh" "$tree")  # Approach 1's selftests (test_selftests)

a1_files=(test_rollback_race test_walk_unlocked test_windows test_lifetime test_instance test_dying test_rollback
	test_premature test_privilege test_permissions test_scale test_cgroup_stat test_selftests test_cli_kernel)
a2_files=(test_walk_unlocked test_rollback test_storm test_files test_v1 test_selftests test_cli)
# BPFFS_SYNC_DEBUG_A1 / _A2: the files to run (names as above), e.g. the kernel-facing ones only when
# the whole suite would outlast the time there is; BPFFS_SYNC_DEBUG_K: a pytest -k expression for both.
[[ -z ${BPFFS_SYNC_DEBUG_A1:-} ]] || read -r -a a1_files <<<"$BPFFS_SYNC_DEBUG_A1"
[[ -z ${BPFFS_SYNC_DEBUG_A2:-} ]] || read -r -a a2_files <<<"$BPFFS_SYNC_DEBUG_A2"
kexpr=()
[[ -z ${BPFFS_SYNC_DEBUG_K:-} ]] || kexpr=(-k "$BPFFS_SYNC_DEBUG_K")

boot() {  # boot NAME TESTS_DIR FILE...
	local name=$1 dir=$2
	shift 2
	local files=()
	for f in "$@"; do files+=("$dir/$f.py"); done
	BPFFS_SYNC_GUEST_OUT=$out/$name "$repo/kernel-approach1/scripts/run-guest.sh" --variant a2-debug --mem 4G \
		env BPFFS_SYNC_TEST_PROGS="$progs" BPFFS_SYNC_TEST_SCALE=0.1 "$repo/.venv/bin/pytest" -v \
		-p no:cacheprovider --rootdir "$repo" -c "$repo/pyproject.toml" --junitxml "$out/$name/junit.xml" \
		--timeout 3600 \
		"${kexpr[@]}" "${files[@]}" \
		>"$out/$name.log" 2>&1
}

start=$(date +%s)
boot a2 "$here/tests" "${a2_files[@]}" &
a2=$!
boot a1 "$repo/kernel-approach1/tests" "${a1_files[@]}" &
a1=$!
rc=0
wait "$a2" || rc=1
wait "$a1" || rc=1
for s in a2 a1; do
	echo "debug-test: $s: $(grep -E '^(=+ )?[0-9]+ (passed|failed)' "$out/$s/stdout" | tail -n 1 || echo 'no summary');" \
		"rc $(cat "$out/$s/rc" 2>/dev/null || echo '?')" >&2
done
echo "debug-test: both boots took $(($(date +%s) - start)) s, results in $out" >&2
exit $rc
