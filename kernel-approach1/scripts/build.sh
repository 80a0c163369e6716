#!/usr/bin/env bash
# Build Linux 7.3 for virtme-ng with the series in ../patches applied.
# Usage: build.sh [plain|debug]     prints the bzImage path on stdout, logs on stderr.
#
# Tree: $BPFFS_SYNC_KCACHE/build-<variant>, a git tree whose first commit (tag `baseline`) is the
# pristine linux-source-7.3. When the series changes, the tree is reset to the baseline and the
# series applied with `git am`; files the series does not touch keep their mtimes, so the build
# is incremental, and ccache covers the rest. A tree whose HEAD already is the series (a
# developer's tree) is left as it is. An unchanged series and config rebuild nothing.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
variant=${1:-plain}
CACHE=${BPFFS_SYNC_KCACHE:-/var/cache/bpffs-sync/kernel}
VNG=${VNG:-$(command -v vng || echo "$here/../.venv/bin/vng")}
export PATH="$(dirname "$VNG"):$PATH"  # vng runs virtme-configkernel from its own bin dir
. "$here/scripts/identity.sh"
GIT=(git "${GIT_IDENT[@]}" -c advice.detachedHead=false)
src=$("$here/scripts/fetch-source.sh")
tree=$CACHE/build-$variant
patches=()
# The posted series, then ../testing (never posted: the race window points the guest tests use).
for p in "$here"/patches/*.patch "$here"/testing/*.patch; do
	[[ -e $p && $p != *-cover-letter.patch ]] && patches+=("$p")
done

export CCACHE_DIR=$CACHE/ccache
mkdir -p "$CACHE"
# One build per tree at a time (a second `make test` waits instead of racing this one).
exec 9>"$CACHE/build-$variant.lock"
flock 9
frag_files=("$here/config/base.config")
[[ $variant == debug ]] && frag_files+=("$here/config/debug.config")
frags=()
for f in "${frag_files[@]}"; do frags+=(--config "$f"); done

if [[ ! -d $tree/.git ]]; then
	echo "build: new tree $tree from $src" >&2
	rm -rf "$tree"
	mkdir -p "$tree"
	cp -a "$src/." "$tree/"
	(cd "$tree" && "${GIT[@]}" init -q && "${GIT[@]}" add -A -f &&
		"${GIT[@]}" commit -qm "linux-source-7.3 baseline" && "${GIT[@]}" tag baseline)
fi
cd "$tree"
"${GIT[@]}" rev-parse -q --verify baseline >/dev/null ||
	"${GIT[@]}" tag baseline "$("${GIT[@]}" rev-list --max-parents=0 HEAD)"

# The tree the series yields, computed in a scratch index without touching the work tree.
index=$(mktemp)
trap 'rm -f "$index"' EXIT
GIT_INDEX_FILE=$index "${GIT[@]}" read-tree baseline
for p in "${patches[@]}"; do
	GIT_INDEX_FILE=$index "${GIT[@]}" apply --cached "$p"
done
want=$(GIT_INDEX_FILE=$index "${GIT[@]}" write-tree)
dirty=$("${GIT[@]}" status --porcelain --untracked-files=no)
if [[ $("${GIT[@]}" rev-parse 'HEAD^{tree}') != "$want" ]]; then
	if [[ -n $dirty ]]; then
		echo "build: $tree has uncommitted changes and is not the series; refusing to reset it" >&2
		echo "$dirty" | head -n 5 >&2
		exit 2
	fi
	echo "build: applying ${#patches[@]} patches to the baseline" >&2
	"${GIT[@]}" am --abort >/dev/null 2>&1 || true
	"${GIT[@]}" reset -q --hard baseline
	for p in "${patches[@]}"; do
		"${GIT[@]}" am -q "$p"
	done
elif [[ -n $dirty ]]; then
	echo "build: building uncommitted changes on top of the series in $tree" >&2
fi

cfg_sum=$(cat "${frag_files[@]}" | sha256sum | cut -c1-16)
if [[ ! -f .config || ! -f .config-$cfg_sum ]]; then
	rm -f .config-*
	"$VNG" --kconfig "${frags[@]}" >&2
	touch ".config-$cfg_sum"
fi
start=$(date +%s)
make -s -j"$(nproc)" CC="ccache gcc" bzImage >&2
echo "build: bzImage up to date after $(($(date +%s) - start)) s" >&2
echo "$tree/arch/x86/boot/bzImage"
