#!/usr/bin/env bash
# Run one long step quietly: its full output goes to a log file; the screen gets the step's name,
# the time elapsed and an estimate from the previous successful run, then one closing line naming
# the log (and, on failure, the log's last lines).
# Usage: scripts/progress.sh NAME COMMAND [ARGS...]
#   Logs: $BPFFS_SYNC_LOG_DIR (default build/logs)/NAME.log; previous duration in NAME.seconds.
#   On a terminal the status line is redrawn every second with the log's latest line; otherwise
#   (CI, a pipe) a line every $BPFFS_SYNC_PROGRESS_EVERY seconds (default 120).
#   Exit status: the command's.
set -uo pipefail
if (($# < 2)); then
	echo "usage: $0 NAME COMMAND [ARGS...]" >&2
	exit 2
fi
name=$1
shift
dir=${BPFFS_SYNC_LOG_DIR:-build/logs}
mkdir -p "$dir"
log=$dir/$name.log
last_file=$dir/$name.seconds
every=${BPFFS_SYNC_PROGRESS_EVERY:-120}
last=$(cat "$last_file" 2>/dev/null || true)
[[ $last =~ ^[0-9]+$ ]] || last=

hms() { # seconds -> 1h02m03s / 2m03s / 3s
	local s=$1
	if ((s >= 3600)); then printf '%dh%02dm%02ds' $((s / 3600)) $((s % 3600 / 60)) $((s % 60))
	elif ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60))
	else printf '%ds' "$s"; fi
}

estimate() { # elapsed -> " / ~total (pct%)" from the last run, or nothing
	local e=$1
	[[ -n $last ]] || return 0
	if ((last > 0 && e <= last)); then printf ' / ~%s (%d%%)' "$(hms "$last")" $((e * 100 / last))
	else printf ' / ~%s (over)' "$(hms "$last")"; fi
}

start=$(date +%s)
"$@" >"$log" 2>&1 </dev/null &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; echo; echo "$name: interrupted; log: $log" >&2; exit 130' INT TERM

tty=
[[ -t 1 && ${TERM:-dumb} != dumb ]] && tty=1
if [[ -z $tty ]]; then
	echo "$name: started${last:+ (last run $(hms "$last"))}; log: $log"
fi
next=$((start + every))
while kill -0 "$pid" 2>/dev/null; do
	sleep 1
	now=$(date +%s)
	elapsed=$((now - start))
	if [[ -n $tty ]]; then
		cols=$(tput cols 2>/dev/null || echo 100)
		head="$name $(hms "$elapsed")$(estimate "$elapsed")"
		tail=$(tail -n 1 "$log" 2>/dev/null | tr -d '\r\t' | cut -c1-200)
		line="$head  $tail"
		printf '\r\033[K%s' "${line:0:$((cols - 1))}"
	elif ((now >= next)); then
		echo "$name: $(hms "$elapsed")$(estimate "$elapsed")"
		next=$((now + every))
	fi
done
wait "$pid"
rc=$?
elapsed=$(($(date +%s) - start))
[[ -n $tty ]] && printf '\r\033[K'
if ((rc == 0)); then
	echo "$elapsed" >"$last_file"
	echo "$name: done in $(hms "$elapsed"); log: $log"
else
	echo "$name: FAILED (exit $rc) after $(hms "$elapsed"); last lines of $log:" >&2
	tail -n 25 "$log" | sed 's/^/  | /' >&2
	echo "$name: full log: $log" >&2
fi
exit $rc
