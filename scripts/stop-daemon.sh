#!/usr/bin/env bash
# Stop the background `bpffs-sync run` (SIGTERM; the mirror stays, a restart adopts it).
set -euo pipefail
cd "$(dirname "$0")/.."
pid=$(.venv/bin/bpffs-sync status --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin)["daemon"]; print(d["pid"] if d.get("running") else "")')
[[ -n $pid ]] || { echo "bpffs-sync run is not running" >&2; exit 0; }
kill -TERM "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
echo "bpffs-sync run (pid $pid) did not stop" >&2
exit 1
