/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every stat program shares: the section its reader lives in, the one log2 histogram
 * printer (the layout of bcc's print_log2_hist, so runqlat/cpudist readers feel at home), and the
 * collectors' hierarchical charging: every ancestor, at any depth (why this way, and what it costs
 * per level, measured: "Hierarchical charging" below).
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
#define STAT_SEC_SLEEPABLE "cgroup/stat.s"	/* a reader that calls sleepable kfuncs */
#else
#define STAT_SEC "iter/cgroup"
#define STAT_SEC_SLEEPABLE "iter.s/cgroup"
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
 * The collectors read kernel memory by plain loads, not bpf_probe_read_kernel() calls (a helper call
 * each, ~3x the cost of the loop below per level): bpf_rdonly_cast() (a kfunc since 6.2, which the
 * verifier turns into a register move) makes an address a read-only, untrusted pointer to a kernel
 * type, whose loads the JIT guards like probe reads (a bad address reads as 0). Field offsets are
 * CO-RE relocated as with BPF_CORE_READ (vmlinux.h types preserve access indexes). Readers keep
 * BPF_CORE_READ: they run once per read() and need no kfunc.
 */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;
#define kern_cast(ptr, type) ((type *)bpf_rdonly_cast((ptr), bpf_core_type_id_kernel(type)))

/*
 * @task's cgroup in the cgroup-v1 hierarchy controller @ssid (a CO-RE constant) is bound to, or
 * NULL when that controller is on v2 (hierarchy 0, charged through dfl_cgrp) or absent. Works for
 * any task pointer (tp_btf's or raw_tp's).
 */
static __always_inline struct cgroup *task_v1_cgroup(struct task_struct *task, int ssid)
{
	struct cgroup_subsys_state *css;
	struct cgroup *cgrp;

	if (ssid < 0 || ssid >= CGROUP_SUBSYS_COUNT)
		return NULL;
	css = kern_cast(task, struct task_struct)->cgroups->subsys[ssid];
	if (!css)
		return NULL;
	cgrp = css->cgroup;
	if (!cgrp || cgrp->root->hierarchy_id == 0)
		return NULL;
	return cgrp;
}

/*
 * Hierarchical charging: every ancestor, when the event happens, in a bpf_loop().
 *
 * A cgroup's figures include its descendants', like the kernel's own (cpu.stat usage_usec,
 * cpuacct.usage, the memcg page counters), exactly and at any depth. Two ways were weighed:
 *  (a) the collector charges the task's cgroup and each of its ancestors, level + 1 entries;
 *  (b) the collector charges only the task's own cgroup and the reader sums the subtree
 *      (bpf_iter_css_* under bpf_rcu_read_lock()).
 * (a) is what runs. (b) is not exact: a removed cgroup's entry leaves the walk (and the daemon
 * deletes it, loader.py forget_cgroup), so its time would vanish from every ancestor, where the
 * kernel keeps it (rstat flushes a dying cgroup into its parent); a read near the root would walk
 * the whole tree; and the reader, also built as the patched kernel's BPF_PROG_TYPE_CGROUP_STAT,
 * would need the css iterator and RCU kfuncs granted to that program type. With (a) the readers
 * are unchanged (one map lookup) and the cost is in the collector, per level one hash lookup and
 * three atomic adds, measured by bench/oncpu_depth.py (2 vCPUs, kernel 6.18, bpf_stats on; ns per
 * sched_switch of a task at v2 level 1 / 5 / 30, each against the old code in the same run):
 *	16 nearest levels, probe reads (old, inexact past 16):	1252 / 1693 / 2674
 *	every level, probe reads (BPF_CORE_READ):		1300 / 1754 / 4512
 *	every level, plain loads (kern_cast, what runs):	 318 /  489 / 1473
 * i.e. ~40 ns per level, and less at depth 30 than the old code spent charging 16 levels.
 *
 * The loop is bpf_loop() (a helper since 5.17; the verifier inlines it into a loop with a direct
 * call), not the open-coded bpf_for() (kfuncs since 6.4): the same per-level work, and no newer
 * kernel than bpf_rdonly_cast() (6.2) already needs. It walks cgroup_parent() (self.parent) from
 * the task's cgroup up: the same chain as cgrp->ancestors[], read without an index (a variable
 * index into a BTF pointer's array is refused by the verifier).
 *
 * "Any depth": level is an int and cgroup.max.depth is unlimited by default, but cgroup_create()
 * allocates a struct cgroup together with its level + 1 ancestor pointers in one kzalloc(), which
 * fails above KMALLOC_MAX_SIZE (4 MiB on x86-64), so no cgroup has a level of 2^19 or more;
 * bpf_loop() runs up to BPF_MAX_LOOPS = 2^23 iterations. Every cgroup the kernel can create is
 * therefore charged on all its levels. Were a level ever 2^23 or more, bpf_loop() would refuse
 * (-E2BIG) and the event would be charged nowhere: never to a part of the chain, which is what
 * made the old 16-level bound wrong (a burner at depth 22 left its level-2 ancestor at 0).
 */
struct charge_ctx {
	struct cgroup *cgrp;	/* the next cgroup to charge: the task's, then each parent in turn */
	__u64 delta_ns;
	__u64 slot;		/* histogram slot of delta_ns */
	__u32 hierarchy_id;
};

/* Charge the event in @c to c->cgrp's entry of @map (a hash cg_key -> hist_value) and step c->cgrp
 * to its parent; 1 (stop) past the root. A racing insert (-EEXIST) is fine: the entry is looked up
 * again. A full map skips the level. */
static __always_inline long charge_level(void *map, struct charge_ctx *c)
{
	struct cgroup_subsys_state *parent;
	struct cg_key key = {};
	struct hist_value *v;
	struct cgroup *cgrp;
	__u64 slot = c->slot;

	if (slot >= MAX_SLOTS)	/* for the verifier: slot came through the stack */
		slot = MAX_SLOTS - 1;
	if (!c->cgrp)
		return 1;
	cgrp = kern_cast(c->cgrp, struct cgroup);
	key.hierarchy_id = c->hierarchy_id;
	key.cgroup_id = cgrp->kn->id;
	parent = cgrp->self.parent;	/* cgroup_parent(): NULL at the root */
	c->cgrp = parent ? parent->cgroup : NULL;
	v = bpf_map_lookup_elem(map, &key);
	if (!v) {
		bpf_map_update_elem(map, &key, &zero_hist, BPF_NOEXIST);
		v = bpf_map_lookup_elem(map, &key);
		if (!v)
			return 0;
	}
	__sync_fetch_and_add(&v->total_ns, c->delta_ns);
	__sync_fetch_and_add(&v->count, 1);
	__sync_fetch_and_add(&v->slots[slot], 1);
	return 0;
}

/*
 * Define charge_hierarchy(cgrp, delta_ns) for the stats map @map: add one event lasting
 * @delta_ns to @cgrp's entry and to every ancestor's (see above), at most level + 1 of them. A
 * macro so that bpf_loop()'s callback names the map as a constant, rather than reading a map
 * pointer back from its context. Use it once per object, after the map's definition.
 */
#define DEFINE_CHARGE_HIERARCHY(map)							\
static long charge_level_cb(__u32 i, void *ctx)						\
{											\
	return charge_level(&map, ctx);							\
}											\
											\
static __always_inline void charge_hierarchy(struct cgroup *cgrp, __u64 delta_ns)	\
{											\
	struct charge_ctx c = {};							\
	struct cgroup *cg;								\
	int level;									\
											\
	if (!cgrp)									\
		return;									\
	cg = kern_cast(cgrp, struct cgroup);						\
	level = cg->level;								\
	if (level < 0)									\
		return;									\
	c.cgrp = cgrp;									\
	c.delta_ns = delta_ns;								\
	c.slot = log2l(delta_ns / 1000);						\
	if (c.slot >= MAX_SLOTS)							\
		c.slot = MAX_SLOTS - 1;							\
	c.hierarchy_id = cg->root->hierarchy_id;					\
	bpf_loop((__u32)level + 1, charge_level_cb, &c, 0);				\
}

#endif /* __STAT_COMMON_BPF_H */
