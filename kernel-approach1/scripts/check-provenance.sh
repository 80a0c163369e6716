#!/usr/bin/env bash
# Provenance of the series: every patch is authored and signed off by the project's own git
# identity (identity.sh), MAINTAINERS gains no person (no added M:/R: line), and the cover
# letter and commit messages attribute nothing to a named reviewer without a list-archive link.
# Usage: check-provenance.sh [PATCH_DIR]   (default ../patches); exit 1 on any finding.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/identity.sh"
dir=${1:-$here/patches}
want="$ident_name <$ident_email>"
status=0
bad() { echo "provenance: $1: $2" >&2; status=1; }
for p in "$dir"/*.patch; do
	name=$(basename "$p")
	from=$(python3 -c 'import email,sys; from email.policy import default
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=default)
print(m["From"])' "$p")
	[[ $from == "$want" ]] || bad "$name" "From is '$from', not '$want'"
	[[ $name == *cover-letter* ]] && continue
	sob=$(grep '^Signed-off-by: ' "$p" || true)
	[[ -n $sob ]] || bad "$name" "no Signed-off-by"
	while IFS= read -r line; do
		[[ -z $line || $line == "Signed-off-by: $want" ]] || bad "$name" "foreign $line"
	done <<<"$sob"
	# added lines of MAINTAINERS naming a maintainer or reviewer
	if awk '/^diff --git a\/MAINTAINERS/{m=1;next} /^diff --git/{m=0} m && /^\+(M|R):/' "$p" | grep -q .; then
		bad "$name" "adds a person to MAINTAINERS"
	fi
done
# a reviewer's name (Cc'd on the RFC or a subsystem maintainer) next to a verb of review, with no link
for f in "$dir"/*.patch; do
	if grep -nEi '\b(tejun|viro|alexei|andrii|daniel|martin|yonghong|eduard|song liu|roman|josh)\b.*\b(asked|nak|naked|nacked|acked|said|suggested|requested|objected|reviewed)' "$f" |
		grep -vi 'https\?://' | grep -q .; then
		bad "$(basename "$f")" "attributes a review to a person without a list-archive link"
	fi
done
exit $status
