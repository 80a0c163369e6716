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

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "stat_common.h"
#include "bits.bpf.h"

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

/* --- keys and hierarchical charging ------------------------------------------------------ */

static const struct hist_value zero_hist;

/* The stats-map key of @cgrp, in whichever hierarchy it lives (hierarchy 0 is v2). */
static __always_inline void cg_key_set(struct cg_key *key, struct cgroup *cgrp)
{
	key->hierarchy_id = BPF_CORE_READ(cgrp, root, hierarchy_id);
	key->pad = 0;
	key->cgroup_id = BPF_CORE_READ(cgrp, kn, id);
}

/*
 * @task's cgroup in the cgroup-v1 hierarchy controller @ssid is bound to, or NULL when that
 * controller is on v2 (hierarchy 0, charged through dfl_cgrp) or absent. Works for any task
 * pointer: every read is a CO-RE probe read.
 */
static __always_inline struct cgroup *task_v1_cgroup(struct task_struct *task, int ssid)
{
	struct cgroup_subsys_state *css;
	struct cgroup *cgrp;

	if (ssid < 0 || ssid >= CGROUP_SUBSYS_COUNT)
		return NULL;
	css = BPF_CORE_READ(task, cgroups, subsys[ssid]);
	if (!css)
		return NULL;
	cgrp = BPF_CORE_READ(css, cgroup);
	if (!cgrp || BPF_CORE_READ(cgrp, root, hierarchy_id) == 0)
		return NULL;
	return cgrp;
}

/*
 * Add one event lasting @delta_ns to @cgrp's entry in @map (a hash of cg_key -> hist_value) and
 * to each ancestor's, MAX_CGROUP_DEPTH entries at most: figures are hierarchical, like the
 * kernel's own (cpu.stat, cpuacct.usage, page counters). A racing insert (-EEXIST) is fine: the
 * entry is looked up again. Always inlined: a map pointer cannot be passed to a subprogram.
 */
static __always_inline void charge_hierarchy(void *map, struct cgroup *cgrp, __u64 delta_ns)
{
	struct hist_value *v;
	struct cg_key key = {};
	struct cgroup *anc;
	__u64 slot;
	int level, i;

	if (!cgrp)
		return;
	slot = log2l(delta_ns / 1000);
	if (slot >= MAX_SLOTS)
		slot = MAX_SLOTS - 1;
	level = BPF_CORE_READ(cgrp, level);
	key.hierarchy_id = BPF_CORE_READ(cgrp, root, hierarchy_id);
	for (i = 0; i < MAX_CGROUP_DEPTH; i++) {
		if (level - i < 0)
			break;
		anc = BPF_CORE_READ(cgrp, ancestors[level - i]);
		if (!anc)
			break;
		key.cgroup_id = BPF_CORE_READ(anc, kn, id);
		v = bpf_map_lookup_elem(map, &key);
		if (!v) {
			bpf_map_update_elem(map, &key, &zero_hist, BPF_NOEXIST);
			v = bpf_map_lookup_elem(map, &key);
			if (!v)
				return;
		}
		__sync_fetch_and_add(&v->total_ns, delta_ns);
		__sync_fetch_and_add(&v->count, 1);
		__sync_fetch_and_add(&v->slots[slot], 1);
	}
}

#endif /* __STAT_COMMON_BPF_H */
