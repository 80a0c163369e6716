#!/usr/bin/env bash
# Start `bpffs-sync run` on the host's /sys/fs/bpf in the background (log: /var/log/bpffs-sync.log)
# unless one already runs, and wait for its first full pass. Idempotent. "Runs" means: holds the
# bpffs's lock (`status` asks the kernel's lock table, not a pid in a file).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin/bpffs-sync
running() { $bin status --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin)["daemon"]; sys.exit(0 if d.get("running") and d.get("full_passes", 0) >= int(sys.argv[1]) else 1)' "$1"; }
if running 0; then
	echo "bpffs-sync run is already mirroring /sys/fs/bpf" >&2
	exit 0
fi
setsid nohup "$bin" --log-format json run >>/var/log/bpffs-sync.log 2>&1 </dev/null &
child=$!
for _ in $(seq 1 200); do
	if running 1; then
		echo "bpffs-sync run started (pid $child), log in /var/log/bpffs-sync.log" >&2
		exit 0
	fi
	# our own child: its pid cannot be reused before we reap it
	kill -0 "$child" 2>/dev/null || { echo "bpffs-sync run exited; see /var/log/bpffs-sync.log" >&2; tail -n 3 /var/log/bpffs-sync.log >&2; exit 1; }
	sleep 0.1
done
echo "bpffs-sync run did not finish its first pass in 20 s; see /var/log/bpffs-sync.log" >&2
exit 1
