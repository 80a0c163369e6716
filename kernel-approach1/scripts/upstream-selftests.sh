#!/usr/bin/env bash
# Upstream BPF selftests on their own config, pristine Linux 7.3 vs 7.3 + the series (issue 18, item 5).
#
# Two kernel trees, each its own git tree (tag `baseline` = pristine linux-source-7.3), both configured
# with `vng --kconfig` + config/base.config + tools/testing/selftests/bpf/config (+ config.x86_64),
# built with modules (bpf_testmod is built by the selftests Makefile against the tree):
#   $CACHE/selftests-pristine   pristine 7.3
#   $CACHE/selftests-patched    7.3 + kernel-approach1/patches (git am, cover letter excluded)
# A never-built patched tree is seeded with the pristine tree's objects (rsync, then the series' files
# are put back with a new mtime), so only what the series changes is compiled.
# Then the FULL test_progs of each tree (clang-19; what clang-19 cannot compile is excluded by name,
# see upstream-selftests-build-tests.sh), a boot of each image under virtme-ng (TCG) running the
# upstream tests, and a table pristine vs patched in kernel-approach1/selftests/upstream-table.md.
# Every compile runs under `nice -n 19` with ccache ($CACHE/ccache): other builds on the host come first.
#
# Usage: upstream-selftests.sh [all]           every phase below, in order
#        upstream-selftests.sh kernel pristine|patched
#        upstream-selftests.sh tests pristine|patched
#        upstream-selftests.sh run pristine|patched
#        upstream-selftests.sh table
# Phase wall times are appended to $CACHE/selftests-times.log (and printed on stderr).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "$here/.." && pwd)
CACHE=${BPFFS_SYNC_KCACHE:-/var/cache/bpffs-sync/kernel}
VNG=${VNG:-$(command -v vng || echo "$repo/.venv/bin/vng")}
export PATH="$(dirname "$VNG"):$PATH"  # vng runs virtme-configkernel from its own bin dir
export CCACHE_DIR=$CACHE/ccache
NICE=(nice -n 19)
. "$here/scripts/identity.sh"
GIT=(git "${GIT_IDENT[@]}" -c advice.detachedHead=false)
times_log=$CACHE/selftests-times.log

phase_time() {  # phase_time NAME START
	local t=$(($(date +%s) - $2))
	printf '%s %-28s %6d s  (%d min)\n' "$(date -u +%FT%TZ)" "$1" "$t" $((t / 60)) | tee -a "$times_log" >&2
}

series() {
	for p in "$here"/patches/*.patch; do
		[[ -e $p && $p != *-cover-letter.patch ]] && echo "$p"
	done
}

frag_files() {  # the config fragments, in merge order (later ones win)
	local sel=$1/tools/testing/selftests/bpf
	echo "$here/config/base.config"
	echo "$sel/config"
	[[ ! -f $sel/config.x86_64 ]] || echo "$sel/config.x86_64"
}

new_tree() {  # new_tree DIR: a git tree of the pristine source, tag baseline
	local tree=$1 src
	[[ -d $tree/.git ]] && return 0
	src=$("$here/scripts/fetch-source.sh")
	echo "upstream-selftests: new tree $tree from $src" >&2
	rm -rf "$tree"
	mkdir -p "$tree"
	cp -a "$src/." "$tree/"
	(cd "$tree" && "${GIT[@]}" init -q && "${GIT[@]}" add -A -f &&
		"${GIT[@]}" commit -qm "linux-source-7.3 baseline" && "${GIT[@]}" tag baseline)
}

apply_series() {  # apply_series TREE: HEAD = baseline + the series; only files that differ are rewritten
	local tree=$1 index want wt new
	local -a patches
	mapfile -t patches < <(series)
	cd "$tree"
	index=$(mktemp)
	GIT_INDEX_FILE=$index "${GIT[@]}" read-tree baseline
	for p in "${patches[@]}"; do GIT_INDEX_FILE=$index "${GIT[@]}" apply --cached "$p"; done
	want=$(GIT_INDEX_FILE=$index "${GIT[@]}" write-tree)
	rm -f "$index"
	[[ $("${GIT[@]}" rev-parse 'HEAD^{tree}') == "$want" ]] && return 0
	if [[ -n $("${GIT[@]}" status --porcelain --untracked-files=no) ]]; then
		echo "upstream-selftests: $tree has uncommitted changes; refusing to reset it" >&2
		exit 2
	fi
	echo "upstream-selftests: applying ${#patches[@]} patches to the baseline of $tree" >&2
	wt=$(mktemp -d "$CACHE/selftests-am.XXXXXX")
	"${GIT[@]}" worktree add -q --detach "$wt" baseline
	if ! (cd "$wt" && for p in "${patches[@]}"; do "${GIT[@]}" am -q "$p"; done); then
		"${GIT[@]}" worktree remove --force "$wt"
		echo "upstream-selftests: the series does not apply" >&2
		exit 2
	fi
	new=$("${GIT[@]}" -C "$wt" rev-parse HEAD)
	"${GIT[@]}" worktree remove --force "$wt"
	"${GIT[@]}" read-tree -m -u HEAD "$new"
	"${GIT[@]}" update-ref "refs/heads/$("${GIT[@]}" symbolic-ref --short HEAD 2>/dev/null || echo master)" "$new"
}

build_kernel() {  # build_kernel pristine|patched
	local variant=$1 tree=$CACHE/selftests-$1 seed=$CACHE/selftests-pristine start cfg_sum
	local -a frags=() files
	new_tree "$tree"
	exec 8>"$tree.lock"
	flock 8
	[[ $variant == patched ]] && apply_series "$tree"
	cd "$tree"
	mapfile -t files < <(frag_files "$tree")
	for f in "${files[@]}"; do frags+=(--config "$f"); done
	cfg_sum=$(cat "${files[@]}" | sha256sum | cut -c1-16)
	# Seed a never-built patched tree with the pristine tree's objects (same config), then put the
	# series' sources back: files that differ from HEAD get a new mtime and are rebuilt.
	if [[ $variant == patched && ! -f vmlinux && -f $seed/vmlinux && -f $seed/.config-$cfg_sum ]]; then
		echo "upstream-selftests: seeding objects from $seed" >&2
		start=$(date +%s)
		# Not the pristine tree's .virtme_mods (links into that tree's modules) nor its test kmods.
		flock "$seed.lock" rsync -a --exclude=/.git --exclude=/.virtme_mods \
			--exclude=/tools/testing/selftests/bpf/test_kmods "$seed/" "$tree/"
		# rsync gave every file a new inode and the seed's mtime: refresh the index first (content
		# compare, no write), or reset --hard would rewrite every file and rebuild everything.
		"${GIT[@]}" update-index -q --refresh || true
		"${GIT[@]}" reset -q --hard HEAD
		"${GIT[@]}" status --porcelain --untracked-files=no | head -n 5 >&2
		phase_time "seed-$variant" "$start"
	fi
	if [[ ! -f .config || ! -f .config-$cfg_sum ]]; then
		rm -f .config-*
		"${NICE[@]}" "$VNG" --kconfig "${frags[@]}" >&2
		touch ".config-$cfg_sum"
	fi
	# The patched tree may add Kconfig symbols the seeded .config lacks.
	"${NICE[@]}" make -s olddefconfig >&2
	start=$(date +%s)
	"${NICE[@]}" make -s -j"$(nproc)" CC="ccache gcc" bzImage modules >&2
	phase_time "kernel-$variant" "$start"
	exec 8>&-  # the later phases (other processes) take this lock again
	echo "$tree/arch/x86/boot/bzImage"
}

main() {
	local cmd=${1:-all}
	case $cmd in
	kernel) build_kernel "${2:?pristine|patched}" ;;
	tests) "$here/scripts/upstream-selftests-build-tests.sh" "$CACHE/selftests-${2:?pristine|patched}" ;;
	run) "$here/scripts/upstream-selftests-run.sh" "${2:?pristine|patched}" ;;
	table) "$repo/.venv/bin/python" "$here/scripts/upstream-selftests-table.py" ;;
	all)
		local start
		start=$(date +%s)
		# Pristine first, all the way to its run, so its results (and the exclusions) come early;
		# the patched tree is then seeded from the pristine objects.
		build_kernel pristine
		main tests pristine
		main run pristine
		build_kernel patched
		main tests patched
		main run patched
		main table
		phase_time all "$start"
		;;
	*) echo "usage: upstream-selftests.sh [all|kernel pristine|patched|tests ...|run ...|table]" >&2; exit 2 ;;
	esac
}
main "$@"
