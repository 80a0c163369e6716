#!/usr/bin/env bash
# Stop the background `bpffs-sync run` on /sys/fs/bpf (SIGTERM; the mirror stays, a restart adopts it).
# `bpffs-sync stop` signals only the process holding the bpffs's lock, checked by pid and start time
# through a pidfd, and waits until it lets go: a pid in a file is never trusted.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/bpffs-sync stop --timeout 10
