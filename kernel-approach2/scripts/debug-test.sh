#!/usr/bin/env bash
# Both series' guest suites on the debug config (lockdep, KASAN, kmemleak, DEBUG_ATOMIC_SLEEP), on the
# one image that carries both (build.sh debug): two boots side by side, one per suite, since a debug
# guest under TCG runs on one host core and is ~12x slower than the plain one. Each run fails on a
# test failure or on any WARNING/BUG/Oops/KASAN/lockdep/kmemleak line in its guest's dmesg
# (kernel-approach1/scripts/run-guest.sh).
# Usage: debug-test.sh [OUT_DIR]     results in OUT_DIR/a1 and OUT_DIR/a2 (default: a temp dir)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$(mktemp -d /tmp/bpffs-sync-debug-test.XXXXXX)}
mkdir -p "$out/a1" "$out/a2"
kernel=$("$here/scripts/build.sh" debug)  # once, before the two boots share the image
make -s -C "${kernel%/arch/x86/boot/bzImage}/tools/lib/bpf" >/dev/null
make -s -C "$here/.." bpf
export BPFFS_SYNC_PREBUILT=1
start=$(date +%s)
BPFFS_SYNC_GUEST_OUT=$out/a2 "$here/scripts/test.sh" --debug >"$out/a2.log" 2>&1 &
a2=$!
BPFFS_SYNC_GUEST_OUT=$out/a1 "$here/scripts/test.sh" --debug --only-a1 >"$out/a1.log" 2>&1 &
a1=$!
rc=0
wait "$a2" || rc=1
wait "$a1" || rc=1
for s in a2 a1; do
	echo "debug-test: $s: $(tail -n 1 "$out/$s/stdout" 2>/dev/null || echo 'no output'); rc $(cat "$out/$s/rc" 2>/dev/null || echo '?')" >&2
done
echo "debug-test: both boots took $(($(date +%s) - start)) s, results in $out" >&2
exit $rc
