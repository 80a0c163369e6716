#!/usr/bin/env bash
# Build Linux 7.3 with the Approach 2 series (kernel-approach2/patches), in one of two images:
#
#   plain (default)  the comparison image, one boot for both approaches: the Approach 1 series
#                    (kernel-approach1/patches, as committed at ../a1-series.rev;
#                    BPFFS_SYNC_A1_REV=<rev> overrides, e.g. HEAD when rebasing), then Approach 2's
#                    own patches (those not in ../prereqs; ../combined/replaces-<patch> instead of
#                    <patch>: the same change rebased where both series touch the same lines), then
#                    ../combined/[0-9]*.patch, the merge of the two link_create() dispatches.
#                    Tree $BPFFS_SYNC_KCACHE/build-a2, seeded
#                    from build-plain (Approach 1's tree, same config).
#   alone            Approach 2 as posted: every patch of kernel-approach2/patches on pristine 7.3,
#                    the shared prerequisites (program type, cgroup_walk_next(), tools UAPI, libbpf:
#                    ../prereqs) included. Tree build-a2-alone, seeded from build-a2.
#   debug            plain + kernel-approach1/config/debug.config (lockdep, KASAN, kmemleak), tree
#                    build-a2-debug.
# Prints the bzImage path on stdout, logs on stderr.
#
# ../prereqs maps each prerequisite patch of this series to the Approach 1 patch it copies; the
# build checks that each pair has the same `git patch-id --stable` (the same change), so the
# comparison image carries each prerequisite once.
#
# A tree is a git tree whose first commit (tag `baseline`) is the pristine linux-source-7.3. When
# the series change, the tree is moved to the new result (only the files that differ are
# rewritten); an unchanged series rebuilds nothing; a tree with uncommitted changes is never
# reset (a developer's work is built on top, with a note).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
a1=$(cd "$here/../kernel-approach1" && pwd)
CACHE=${BPFFS_SYNC_KCACHE:-/var/cache/bpffs-sync/kernel}
VNG=${VNG:-$(command -v vng || echo "$here/../.venv/bin/vng")}
export PATH="$(dirname "$VNG"):$PATH"  # vng runs virtme-configkernel from its own bin dir
. "$a1/scripts/identity.sh"
GIT=(git "${GIT_IDENT[@]}" -c advice.detachedHead=false)
variant=${1:-plain}
case $variant in
plain) tree=$CACHE/build-a2 seed=$CACHE/build-plain ;;
alone) tree=$CACHE/build-a2-alone seed=$CACHE/build-a2 ;;
debug) tree=$CACHE/build-a2-debug seed=$CACHE/build-debug ;;
*) echo "usage: build.sh [plain|alone|debug]" >&2; exit 2 ;;
esac
src=$("$a1/scripts/fetch-source.sh")
series() {
	for p in "$1"/patches/*.patch; do
		[[ -e $p && $p != *-cover-letter.patch ]] && echo "$p"
	done
}
repo=$(cd "$here/.." && pwd)
a1_rev=${BPFFS_SYNC_A1_REV:-$(cat "$here/a1-series.rev")}
a1_snap=$(mktemp -d)
trap 'rm -rf "$a1_snap"' EXIT
a1_paths=(kernel-approach1/patches kernel-approach1/config)
# ../../kernel-approach1/testing: Approach 1's race window points for its guest tests, never posted
git -C "$repo" cat-file -e "$a1_rev:kernel-approach1/testing" 2>/dev/null && a1_paths+=(kernel-approach1/testing)
git -C "$repo" archive "$a1_rev" "${a1_paths[@]}" | tar -x -C "$a1_snap" --strip-components=1
mapfile -t a2_all < <(series "$here")
# Approach 2's prerequisites: the same change as an Approach 1 patch (../prereqs)
declare -A prereq=()
while read -r mine theirs; do
	[[ -z $mine || $mine == \#* ]] && continue
	p2=$(ls "$here"/patches/"$mine"-*.patch)
	p1=$(ls "$a1_snap"/patches/"$theirs"-*.patch)
	if [[ $(git patch-id --stable <"$p2" | cut -d' ' -f1) != $(git patch-id --stable <"$p1" | cut -d' ' -f1) ]]; then
		echo "build: $(basename "$p2") is not the change of Approach 1's $(basename "$p1") (../prereqs)" >&2
		exit 2
	fi
	prereq[$p2]=1
done <"$here/prereqs"
if [[ $variant == alone ]]; then
	a1_patches=()
	a2_patches=("${a2_all[@]}")
else
	mapfile -t a1_patches < <(series "$a1_snap")
	for p in "$a1_snap"/testing/*.patch; do [[ -e $p ]] && a1_patches+=("$p"); done
	a2_patches=()
	for p in "${a2_all[@]}"; do
		[[ -n ${prereq[$p]:-} ]] && continue
		# rebased onto Approach 1 where both series change the same lines (../combined)
		r=$here/combined/replaces-$(basename "$p")
		[[ -e $r ]] && p=$r
		a2_patches+=("$p")
	done
	a2_patches+=("$here"/combined/[0-9]*.patch)
fi

export CCACHE_DIR=$CACHE/ccache
mkdir -p "$CACHE"
exec 9>"$tree.lock"  # one build of this tree at a time
flock 9
frag_files=("$a1_snap/config/base.config")  # the config of that revision too
[[ $variant == debug ]] && frag_files+=("$a1_snap/config/debug.config")
frags=()
for f in "${frag_files[@]}"; do frags+=(--config "$f"); done
cfg_sum=$(cat "${frag_files[@]}" | sha256sum | cut -c1-16)

if [[ ! -d $tree/.git ]]; then
	echo "build: new tree $tree from $src" >&2
	rm -rf "$tree"
	mkdir -p "$tree"
	cp -a "$src/." "$tree/"
	(cd "$tree" && "${GIT[@]}" init -q && "${GIT[@]}" add -A -f &&
		"${GIT[@]}" commit -qm "linux-source-7.3 baseline" && "${GIT[@]}" tag baseline)
fi
cd "$tree"

want_tree() {  # the tree a list of patches yields on the baseline, without touching the work tree
	local index
	index=$(mktemp)
	GIT_INDEX_FILE=$index "${GIT[@]}" read-tree baseline
	for p in "$@"; do GIT_INDEX_FILE=$index "${GIT[@]}" apply --cached "$p"; done
	GIT_INDEX_FILE=$index "${GIT[@]}" write-tree
	rm -f "$index"
}
want=$(want_tree "${a1_patches[@]}" "${a2_patches[@]}")
dirty=$("${GIT[@]}" status --porcelain --untracked-files=no)
if [[ $("${GIT[@]}" rev-parse 'HEAD^{tree}') != "$want" ]]; then
	if [[ -n $dirty ]]; then
		echo "build: $tree has uncommitted changes and is not the series; refusing to reset it" >&2
		echo "$dirty" | head -n 5 >&2
		exit 2
	fi
	echo "build: applying ${#a1_patches[@]} + ${#a2_patches[@]} patches to the baseline" >&2
	# In a scratch worktree, then moved here with a two-tree read-tree: only the files that differ
	# are rewritten (a reset to the baseline would touch every file of both series, the UAPI
	# header included, and rebuild most of the kernel).
	wt=$(mktemp -d "$CACHE/a2-am.XXXXXX")
	"${GIT[@]}" worktree add -q --detach "$wt" baseline
	if ! (cd "$wt" && for p in "${a1_patches[@]}"; do "${GIT[@]}" am -q "$p"; done &&
		"${GIT[@]}" tag -f a1-base >/dev/null &&
		for p in "${a2_patches[@]}"; do "${GIT[@]}" am -q "$p"; done); then
		"${GIT[@]}" worktree remove --force "$wt"
		echo "build: the series do not apply (Approach 1 at $a1_rev)" >&2
		exit 2
	fi
	new=$("${GIT[@]}" -C "$wt" rev-parse HEAD)
	"${GIT[@]}" worktree remove --force "$wt"
	"${GIT[@]}" read-tree -m -u HEAD "$new"
	"${GIT[@]}" update-ref "refs/heads/$("${GIT[@]}" symbolic-ref --short HEAD 2>/dev/null || echo a2)" "$new"
elif [[ -n $dirty ]]; then
	echo "build: building uncommitted changes on top of the series in $tree" >&2
fi

# Seed a never-built tree with the Approach 1 tree's objects (same config), then put our sources
# back: files that differ get a new mtime and are rebuilt, the rest is up to date.
if [[ ! -f vmlinux && -f $seed/vmlinux && -f $seed/.config-$cfg_sum ]]; then
	echo "build: seeding objects from $seed" >&2
	flock "$seed.lock" rsync -a --exclude=/.git "$seed/" "$tree/"
	stash=$(mktemp -d)
	[[ -z $dirty ]] || "${GIT[@]}" diff >"$stash/dev.diff"
	"${GIT[@]}" reset -q --hard HEAD
	[[ -z $dirty ]] || "${GIT[@]}" apply "$stash/dev.diff"
	rm -rf "$stash"
fi

if [[ ! -f .config || ! -f .config-$cfg_sum ]]; then
	rm -f .config-*
	"$VNG" --kconfig "${frags[@]}" >&2
	touch ".config-$cfg_sum"
fi
start=$(date +%s)
make -s -j"$(nproc)" CC="ccache gcc" bzImage >&2
echo "build: bzImage up to date after $(($(date +%s) - start)) s" >&2
echo "$tree/arch/x86/boot/bzImage"
