#!/usr/bin/env bash
# Export the Approach 2 series, as posted (standalone on pristine 7.3), from a developer's tree
# into ../patches: `git format-patch baseline..HEAD` with a cover letter from ../cover-letter.txt
# (first line: subject), then checkpatch.pl --strict on every patch (fails on any error, warning
# or check) and Approach 1's provenance check. The merge into the comparison image
# (../combined/*.patch) is kept by hand: `git format-patch -1` of the merge commit in a tree of
# Approach 1 + this series' own patches.
# Usage: export-series.sh [TREE]   (default: $BPFFS_SYNC_KCACHE/build-a2-alone)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
a1=$(cd "$here/../kernel-approach1" && pwd)
CACHE=${BPFFS_SYNC_KCACHE:-/var/cache/bpffs-sync/kernel}
tree=${1:-$CACHE/build-a2-alone}
out=$here/patches
. "$a1/scripts/identity.sh"

mkdir -p "$out"
rm -f "$out"/*.patch
git -C "$tree" "${GIT_IDENT[@]}" format-patch -q --cover-letter --subject-prefix="PATCH bpf-next" \
	-o "$out" baseline..HEAD
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
for p in "$out"/*.patch; do
	[[ $p == "$cover" ]] && continue
	res=$(PATH=/usr/bin:$PATH "$tree/scripts/checkpatch.pl" --strict -q "$p" 2>&1 || true)
	if [[ -n $res ]]; then
		echo "$res" >&2
		status=1
	fi
done
"$a1/scripts/check-provenance.sh" "$out" || status=1
ls "$out"
exit $status
