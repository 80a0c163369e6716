/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every stat program shares: the section its reader lives in, and the one log2 histogram
 * printer (the layout of bcc's print_log2_hist, so runqlat/cpudist readers feel at home).
 *
 * One source builds twice:
 *   - stock kernel:   SEC("iter/cgroup"), one pinned SELF_ONLY cgroup iterator per cgroup;
 *   - patched kernel: SEC("cgroup/stat") (BPF_PROG_TYPE_CGROUP_STAT), -DBPFFS_SYNC_CGROUP_STAT.
 * Both hand the reader a struct bpf_iter__cgroup {meta, cgroup}.
 */
#ifndef __STAT_COMMON_BPF_H
#define __STAT_COMMON_BPF_H

#include "stat_common.h"

#ifdef BPFFS_SYNC_CGROUP_STAT
#define STAT_SEC "cgroup/stat"
#else
#define STAT_SEC "iter/cgroup"
#endif

#define HIST_BAR_WIDTH 40

/*
 * Print @slots as a log2 histogram of @unit. Prints nothing when all slots are zero.
 * Output is at most 2 + MAX_SLOTS lines of 80 bytes: far below the 8-page seq buffer.
 */
static const char hist_stars[HIST_BAR_WIDTH + 1] = "****************************************";
static const char hist_spaces[HIST_BAR_WIDTH + 1] = "                                        ";

static __always_inline void print_log2_hist(struct seq_file *seq, const __u64 *slots,
					    const char *header)
{
	__u64 max = 0, low, high, val, stars;
	int i, idx_max = -1;

	for (i = 0; i < MAX_SLOTS; i++) {
		val = slots[i];
		if (val)
			idx_max = i;
		if (val > max)
			max = val;
	}
	if (idx_max < 0)
		return;

	BPF_SEQ_PRINTF(seq, "%s", header);
	for (i = 0; i < MAX_SLOTS; i++) {
		if (i > idx_max)
			break;
		val = slots[i];
		low = (1ULL << (i + 1)) >> 1;
		high = (1ULL << (i + 1)) - 1;
		if (low == high)
			low -= 1;
		stars = val * HIST_BAR_WIDTH / max;
		if (stars > HIST_BAR_WIDTH)
			stars = HIST_BAR_WIDTH;
		/* The bar is a suffix of the stars plus a suffix of the spaces: no per-char loop. */
		BPF_SEQ_PRINTF(seq, "%10llu -> %-10llu : %-8llu |%s%s|\n", low, high, val,
			       &hist_stars[HIST_BAR_WIDTH - stars], &hist_spaces[stars]);
	}
}

#endif /* __STAT_COMMON_BPF_H */
