#!/usr/bin/env bash
# Export the series from a developer's kernel tree into ../patches: `git format-patch baseline..HEAD`
# (trailing commits marked "Testing-only: yes" go to ../testing instead) with a cover letter
# whose subject and body come from ../cover-letter.txt (first line: subject),
# then checkpatch.pl --strict on every patch (fails on any error, warning or check).
# Usage: export-series.sh [TREE]   (default: $BPFFS_SYNC_KCACHE/build-plain)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${BPFFS_SYNC_KCACHE:-/var/cache/bpffs-sync/kernel}
tree=${1:-$CACHE/build-plain}
out=$here/patches
. "$here/scripts/identity.sh"

testing=$here/testing

# Commits with the trailer "Testing-only: yes" (race window points for the guest tests) are never
# posted: they must come after the series, and go to ../testing, applied after it by the builds.
tip=HEAD
while git -C "$tree" log -1 --format=%B "$tip" | grep -qx 'Testing-only: yes'; do
	tip=$(git -C "$tree" rev-parse "$tip^")
done
if git -C "$tree" log --format=%B "baseline..$tip" | grep -qx 'Testing-only: yes'; then
	echo "export-series: a Testing-only commit inside the series; move it after the last posted patch" >&2
	exit 2
fi
rm -f "$out"/*.patch "$testing"/*.patch
git -C "$tree" "${GIT_IDENT[@]}" format-patch -q --cover-letter --subject-prefix="PATCH bpf-next" -o "$out" "baseline..$tip"
if [[ $(git -C "$tree" rev-parse "$tip") != $(git -C "$tree" rev-parse HEAD) ]]; then
	mkdir -p "$testing"
	git -C "$tree" "${GIT_IDENT[@]}" format-patch -q --subject-prefix="TESTING ONLY" -o "$testing" "$tip..HEAD"
fi
cover=$(ls "$out"/0000-cover-letter.patch)
python3 - "$cover" "$here/cover-letter.txt" <<'PY'
import sys
cover, text = sys.argv[1], open(sys.argv[2]).read()
subject, _, body = text.partition("\n")
s = open(cover).read()
s = s.replace("*** SUBJECT HERE ***", subject.strip()).replace("*** BLURB HERE ***", body.strip("\n"))
open(cover, "w").write(s)
PY
# Debian's python3 first: checkpatch runs scripts/spdxcheck.py, which needs python3-ply and
# python3-git (install-deps.sh --kernel), not a pyenv or venv interpreter without them.
status=0
for p in "$out"/*.patch "$testing"/*.patch; do
	[[ $p == "$cover" || ! -e $p ]] && continue
	res=$(PATH=/usr/bin:$PATH "$tree/scripts/checkpatch.pl" --strict -q "$p" 2>&1 || true)
	if [[ -n $res ]]; then
		echo "$res" >&2
		status=1
	fi
done
"$here/scripts/check-provenance.sh" "$out" || status=1
ls "$out"
exit $status
