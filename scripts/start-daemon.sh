#!/usr/bin/env bash
# Start `bpffs-sync run` on the host's /sys/fs/bpf in the background (log: /var/log/bpffs-sync.log)
# unless one already runs, and wait for its first full pass. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin/bpffs-sync
if $bin status --json 2>/dev/null | grep -q '"running": true'; then
	echo "bpffs-sync run is already mirroring /sys/fs/bpf" >&2
	exit 0
fi
setsid nohup "$bin" --log-format json run >>/var/log/bpffs-sync.log 2>&1 </dev/null &
for _ in $(seq 1 200); do
	if $bin status --json 2>/dev/null | grep -q '"full_passes": [1-9]'; then
		echo "bpffs-sync run started (pid $!), log in /var/log/bpffs-sync.log" >&2
		exit 0
	fi
	kill -0 $! 2>/dev/null || { echo "bpffs-sync run exited; see /var/log/bpffs-sync.log" >&2; tail -n 3 /var/log/bpffs-sync.log >&2; exit 1; }
	sleep 0.1
done
echo "bpffs-sync run did not finish its first pass in 20 s; see /var/log/bpffs-sync.log" >&2
exit 1
