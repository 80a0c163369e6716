#!/usr/bin/env bash
# Fold the working-tree state of FILES into the series commit TARGET of a dev tree, rewriting
# TARGET and the commits after it with plumbing only: no checkout, so no file's mtime changes
# and the next build recompiles just what the edit touched (a rebase would rewrite every file of
# the later patches, bpf-cgroup-defs.h included, and rebuild most of the kernel).
#
# Usage: fold.sh TREE TARGET FILE...     e.g. fold.sh build-plain HEAD~2 kernel/bpf/cgroup_stat.c
# A FILE must not change in a commit after TARGET (those commits would lose their change).
set -euo pipefail

main() {
	[[ $# -ge 3 ]] || { echo "usage: fold.sh TREE TARGET FILE..." >&2; exit 2; }
	local tree=$1 target files commit parent blob file
	target=$(git -C "$tree" rev-parse --verify "$2^{commit}")
	shift 2
	files=("$@")
	cd "$tree"
	git merge-base --is-ancestor "$target" HEAD || { echo "fold: $target is not in HEAD's history" >&2; exit 2; }
	for file in "${files[@]}"; do
		if [[ -n $(git rev-list "$target..HEAD" -- "$file") ]]; then
			echo "fold: $file changes after $target; fold into the last commit touching it" >&2
			exit 2
		fi
	done

	idx=$(mktemp)  # global: the EXIT trap runs after main returns
	trap 'rm -f "$idx"' EXIT
	parent=$(git rev-parse "$target^")
	for commit in $(git rev-list --reverse "$target^..HEAD"); do
		GIT_INDEX_FILE=$idx git read-tree "$commit"
		for file in "${files[@]}"; do
			blob=$(git hash-object -w -- "$file")
			GIT_INDEX_FILE=$idx git update-index --cacheinfo "100644,$blob,$file"
		done
		parent=$(git log -1 --format='%an%x00%ae%x00%ad%x00%B' "$commit" |
			{
				IFS= read -r -d '' an; IFS= read -r -d '' ae; IFS= read -r -d '' ad
				msg=$(cat)
				GIT_AUTHOR_NAME=$an GIT_AUTHOR_EMAIL=$ae GIT_AUTHOR_DATE=$ad \
					git commit-tree "$(GIT_INDEX_FILE=$idx git write-tree)" -p "$parent" -m "$msg"
			})
	done
	git reset -q --soft "$parent"
	git reset -q -- "${files[@]}"  # index = new HEAD; the files on disk are untouched
	git log --oneline "$target^..HEAD"
}

main "$@"
exit
