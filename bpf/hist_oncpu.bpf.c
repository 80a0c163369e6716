// SPDX-License-Identifier: GPL-2.0
/*
 * hist_oncpu: per cgroup-v2 on-CPU time and a log2 histogram of on-CPU slice lengths.
 *
 * Collector: sched_switch (tp_btf, raw_tp fallback) charges the slice that just ended on this
 * CPU (now - last switch on this CPU) to the previous task's v2 cgroup and to its ancestors,
 * so a cgroup's figures are hierarchical, like cpu.stat's usage_usec. The idle task is skipped.
 * Reader: for ctx->cgroup, prints
 *	cgroup_id: <id>
 *	total_ns: <ns>
 *	slices: <n>
 * followed by the histogram of slice lengths in usecs (nothing when there are no slices).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "hist_oncpu.h"
#include "bits.bpf.h"
#include "stat_common.bpf.h"

#define MAX_ENTRIES 65536

/* Pinned by the loader under <bpffs>/bpffs-sync/hist_oncpu/ so restarts adopt it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, __u64);
	__type(value, struct oncpu_stat);
} oncpu_stats SEC(".maps");

/* Time of the last context switch on each CPU: the start of the running slice. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} last_switch SEC(".maps");

static const struct oncpu_stat zero_stat;

static __always_inline void charge(__u64 cgid, __u64 delta_ns, __u64 slot)
{
	struct oncpu_stat *st;

	st = bpf_map_lookup_elem(&oncpu_stats, &cgid);
	if (!st) {
		/* -EEXIST from a racing insert is fine: look it up again. */
		bpf_map_update_elem(&oncpu_stats, &cgid, &zero_stat, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&oncpu_stats, &cgid);
		if (!st)
			return;
	}
	__sync_fetch_and_add(&st->total_ns, delta_ns);
	__sync_fetch_and_add(&st->slices, 1);
	__sync_fetch_and_add(&st->slots[slot], 1);
}

static __always_inline int handle_switch(struct task_struct *prev)
{
	struct cgroup *cgrp, *anc;
	__u64 now, *last, delta, slot;
	__u32 zero = 0;
	int level, i;

	now = bpf_ktime_get_ns();
	last = bpf_map_lookup_elem(&last_switch, &zero);
	if (!last)
		return 0;
	delta = *last ? now - *last : 0;
	*last = now;
	if (!delta || BPF_CORE_READ(prev, pid) == 0)
		return 0;

	slot = log2l(delta / 1000);
	if (slot >= MAX_SLOTS)
		slot = MAX_SLOTS - 1;

	cgrp = BPF_CORE_READ(prev, cgroups, dfl_cgrp);
	if (!cgrp)
		return 0;
	level = BPF_CORE_READ(cgrp, level);
	for (i = 0; i < MAX_CGROUP_DEPTH; i++) {
		if (level - i < 0)
			break;
		anc = BPF_CORE_READ(cgrp, ancestors[level - i]);
		if (!anc)
			break;
		charge(BPF_CORE_READ(anc, kn, id), delta, slot);
	}
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(oncpu_tp_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return handle_switch(prev);
}

SEC("raw_tp/sched_switch")
int BPF_PROG(oncpu_raw_tp, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return handle_switch(prev);
}

SEC(STAT_SEC)
int hist_oncpu(struct bpf_iter__cgroup *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct cgroup *cgrp = ctx->cgroup;
	struct oncpu_stat *st;
	__u64 cgid;

	if (!cgrp)
		return 0;
	cgid = cgrp->kn->id;
	st = bpf_map_lookup_elem(&oncpu_stats, &cgid);
	BPF_SEQ_PRINTF(seq, "cgroup_id: %llu\n", cgid);
	BPF_SEQ_PRINTF(seq, "total_ns: %llu\n", st ? st->total_ns : 0);
	BPF_SEQ_PRINTF(seq, "slices: %llu\n", st ? st->slices : 0);
	if (st)
		print_log2_hist(seq, st->slots, "     usecs               : count    distribution\n");
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
