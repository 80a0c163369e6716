#!/usr/bin/env bash
# Boot a selftests image (upstream-selftests.sh) under virtme-ng (scripts/run-guest.sh: TCG, dmesg
# checked for WARNING/BUG/lockdep reports) and run the upstream test_progs built by
# upstream-selftests-build-tests.sh, from its OUTPUT directory, in one boot:
#   1. the core list ($UPSTREAM_TESTS below; -t is a substring match: cgroup_stat also selects
#      cgroup_stat_fail, the series' verifier test of the new type, RUN_TESTS on progs/cgroup_stat_fail.c)
#   2. -t verifier_   every verifier_* test (the series adds none of its own; they guard the verifier,
#      btf.c and helpers.c changes it makes for everyone), unless BPFFS_SYNC_SELFTESTS_NO_VERIFIER=1
# Each run writes test_progs' text output (per test and subtest: OK/SKIP/FAIL) and its --json-summary
# (-J: totals and the failures' logs) into build/selftests/upstream-run-<variant>/, which is also
# run-guest.sh's --rwdir (the guest's only writable host directory; dmesg, console there too).
# Usage: upstream-selftests-run.sh pristine|patched
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
variant=${1:?usage: upstream-selftests-run.sh pristine|patched}
CACHE=${BPFFS_SYNC_KCACHE:-/var/cache/bpffs-sync/kernel}
UPSTREAM_TESTS=libbpf_probes,bpf_iter,cgroup_iter,cgroup_hierarchical_stats,test_bpffs,cgroup_link,token,pinning,btf_dump,cgroup_stat,cgroup_stat_fail
bin=$repo/build/selftests/upstream-$variant
res=$repo/build/selftests/upstream-run-$variant
[[ -x $bin/test_progs ]] || { echo "upstream-selftests: no $bin/test_progs (upstream-selftests.sh tests $variant)" >&2; exit 2; }
[[ -f $CACHE/selftests-$variant/arch/x86/boot/bzImage ]] || { echo "upstream-selftests: $variant kernel not built" >&2; exit 2; }

# run-guest.sh boots $BPFFS_SYNC_KCACHE/build-<variant>: a directory of links to the selftests trees.
kc=$CACHE/selftests-kc
mkdir -p "$kc"
ln -sfn "$CACHE/selftests-$variant" "$kc/build-$variant"
rm -rf "$res"
mkdir -p "$res"
cat >"$res/in-guest.sh" <<EOF
#!/bin/bash
# In the guest: both runs, one boot. Output under $res.
cd "$bin"
uname -r >"$res/uname"
./test_progs -t $UPSTREAM_TESTS -J "$res/core.json" >"$res/core.txt" 2>&1
echo \$? >"$res/core.rc"
if [ -z "${BPFFS_SYNC_SELFTESTS_NO_VERIFIER:-}" ]; then
	./test_progs -t verifier_ -J "$res/verifier.json" >"$res/verifier.txt" 2>&1
	echo \$? >"$res/verifier.rc"
fi
tail -n 3 "$res/core.txt"
[ ! -f "$res/verifier.txt" ] || tail -n 3 "$res/verifier.txt"
EOF
chmod +x "$res/in-guest.sh"
printf '%s\n' "./test_progs -t $UPSTREAM_TESTS -J core.json" "./test_progs -t verifier_ -J verifier.json" >"$res/commands"

start=$(date +%s)
set +e
BPFFS_SYNC_KCACHE=$kc BPFFS_SYNC_GUEST_OUT=$res BPFFS_SYNC_GUEST_TIMEOUT=${BPFFS_SYNC_GUEST_TIMEOUT:-10800} \
	"$here/scripts/run-guest.sh" --variant "$variant" --mem 4G "$res/in-guest.sh"
rc=$?
set -e
echo "$rc" >"$res/guest.rc"
t=$(($(date +%s) - start))
printf '%s %-28s %6d s  (%d min) rc=%d\n' "$(date -u +%FT%TZ)" "boot+run-$variant" "$t" $((t / 60)) "$rc" |
	tee -a "$CACHE/selftests-times.log" >&2
# rc 3: the tests' own verdicts are in the table; the kernel's reports are in $res/dmesg.
[[ -f $res/core.txt ]] || { echo "upstream-selftests: the $variant guest ran nothing (rc $rc)" >&2; exit 1; }
