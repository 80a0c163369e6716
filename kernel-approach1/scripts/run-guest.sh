#!/usr/bin/env bash
# Boot the kernel that build.sh made under virtme-ng and run a command inside, as root.
# KVM is not usable here (nested KVM aborts on MSR 0x10a), so the guest runs under TCG.
# Under TCG vng has no script I/O port: the command's output and exit code travel through an
# --rwdir directory instead of the console. The guest sees the host's rootfs (Python, libbpf).
#
# Usage: run-guest.sh [--variant plain|debug|a2|a2-debug] [--mem 2G] CMD...
# Prints the command's stdout/stderr, saves dmesg in $BPFFS_SYNC_GUEST_OUT (default: a temp dir),
# and exits with the command's exit code (125 when the guest gave none: it did not boot or crashed;
# 3 when the command passed but the guest's dmesg has a WARNING, BUG, Oops, KASAN, lockdep or
# kmemleak report; debug kernels get a forced kmemleak scan after the command, and every KASAN
# report). A boot whose dmesg has a report before the command runs is retried, at most 3 boots.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
variant=plain mem=2G append=${BPFFS_SYNC_GUEST_APPEND:-}
while [[ $# -gt 0 ]]; do
	case $1 in
	--variant) variant=$2; shift 2 ;;
	--mem) mem=$2; shift 2 ;;
	--) shift; break ;;
	*) break ;;
	esac
done
[[ $# -gt 0 ]] || { echo "usage: run-guest.sh [--variant plain|debug] [--mem 2G] CMD..." >&2; exit 2; }

CACHE=${BPFFS_SYNC_KCACHE:-/var/cache/bpffs-sync/kernel}
VNG=${VNG:-$(command -v vng || echo "$repo/.venv/bin/vng")}
export PATH="$(dirname "$VNG"):$PATH"  # vng runs virtme-run from its own bin dir
tree=$CACHE/build-$variant
# Debug kernels: every KASAN report, not just the first (the first one also turns lockdep off), and
# 4-level paging. TCG emulates LA57; while identify_cpu() resets the CPUID table at boot, an
# interrupt sees pgtable_l5_enabled() false and KASAN calls every 5-level direct-map address
# "wild-memory-access" (a flood of reports at 0.004 s, before any of the series' code runs).
[[ $variant == *debug ]] && append="kasan_multi_shot no5lvl $append"
# Under TCG on a loaded host the boot-time check that the timer interrupt arrives through the
# IO-APIC can time out ("IO-APIC + timer doesn't work!" and a panic at 0.008 s): skip that check.
append="no_timer_check $append"
kernel=$tree/arch/x86/boot/bzImage
[[ -f $kernel ]] || { echo "run-guest: no kernel at $kernel (run scripts/build.sh $variant)" >&2; exit 2; }

out=${BPFFS_SYNC_GUEST_OUT:-$(mktemp -d /tmp/bpffs-sync-guest.XXXXXX)}
mkdir -p "$out"
# What fails a run. Lockdep reports start with WARNING:/BUG:; a report that turns lockdep off says so.
problems='WARNING:|BUG:|Oops|KASAN:|possible (circular|recursive) locking|inconsistent lock state'
problems+='|turning off the locking correctness validator|Disabling lock debugging|kmemleak: [0-9]+ new'
printf '%q ' "$@" >"$out/cmd"
cat >"$out/guest.sh" <<GUEST
#!/bin/bash
cd "$repo"
# A report while booting (before the command) is not the command's, but it may have switched
# lockdep or KASAN off for the rest of the run: give up this boot, the host boots again.
if dmesg | grep -qE '$problems'; then
	dmesg >"$out/dmesg.boot"
	exit 0
fi
bash "$out/cmd.sh" >"$out/stdout" 2>"$out/stderr"
echo \$? >"$out/rc"
# Debug kernels: force two kmemleak scans (an object must be 5 s old to be reported); leaks
# then show in dmesg as "kmemleak: N new suspected memory leaks" and in \$out/kmemleak.
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
if [ -w /sys/kernel/debug/kmemleak ]; then
	echo scan >/sys/kernel/debug/kmemleak; sleep 6; echo scan >/sys/kernel/debug/kmemleak
	cat /sys/kernel/debug/kmemleak >"$out/kmemleak"
fi
dmesg >"$out/dmesg"
GUEST
{ echo '#!/bin/bash'; cat "$out/cmd"; echo; } >"$out/cmd.sh"
chmod +x "$out/guest.sh" "$out/cmd.sh"

cd "$tree"
# One boot's budget (BPFFS_SYNC_GUEST_TIMEOUT overrides): a plain boot runs one suite (make kernel-test
# boots one per suite, side by side); on 2026-12-07 one boot running both suites one after the other
# ran into the 30 min this was, with Approach 1's suite at its 39th test: 60 min, inside CI's 90.
timeout=${BPFFS_SYNC_GUEST_TIMEOUT:-$([[ $variant == *debug ]] && echo 10800 || echo 3600)}
# Single-threaded TCG: under multi-threaded TCG the other vCPU can run a stale translation of text
# the kernel is patching (text_poke_bp) and take the int3 after the patch is done: an "Oops: int3"
# in __schedule whenever a test attaches/detaches the sched_switch collector (static key flip).
# --verbose puts the guest console (panics included) in $out/console.
for attempt in 1 2 3; do
	rm -f "$out"/{stdout,stderr,rc,dmesg,dmesg.boot,kmemleak}
	timeout "$timeout" "$VNG" -r "$kernel" --disable-kvm --qemu-opts="-accel tcg,thread=single" --verbose \
		${append:+--append "$append"} --user root -m "$mem" -p 2 --rwdir "$out" \
		--exec "$out/guest.sh" >"$out/console" 2>&1 || true
	[[ -f $out/dmesg.boot ]] || break
	echo "run-guest: boot $attempt reported a problem before the command ran; booting again:" >&2
	grep -E -m 3 "$problems" "$out/dmesg.boot" >&2
	cp "$out/dmesg.boot" "$out/dmesg.boot.$attempt"
done
if [[ -f $out/dmesg.boot ]]; then
	echo "run-guest: three boots in a row reported problems before the command ran" >&2
	exit 3
fi

cat "$out/stdout" 2>/dev/null || true
cat "$out/stderr" >&2 2>/dev/null || true
if [[ ! -f $out/rc ]]; then
	echo "run-guest: the guest returned no exit code; console log: $out/console" >&2
	tail -n 20 "$out/console" >&2
	exit 125
fi
rc=$(cat "$out/rc")
# A run whose kernel complained fails, whatever the command said.
if grep -qE "$problems" "$out/dmesg"; then
	echo "run-guest: the guest kernel reported problems (from $out/dmesg):" >&2
	grep -E -A 12 "$problems" "$out/dmesg" | head -n 60 >&2
	[[ $rc -ne 0 ]] || rc=3
fi
exit "$rc"
