// SPDX-License-Identifier: GPL-2.0
/*
 * hist_oncpu: per cgroup on-CPU time and a log2 histogram of on-CPU slice lengths.
 *
 * Collector: sched_switch (tp_btf, raw_tp fallback) charges the slice that just ended on this
 * CPU (now - last switch on this CPU) to the previous task's v2 cgroup and to every ancestor,
 * at any depth, so a cgroup's figures are hierarchical, like cpu.stat's usage_usec (a switch
 * costs ~40 ns more per level: stat_common.bpf.h, "Hierarchical charging"). When the cpu or
 * cpuacct controller is on a cgroup-v1 hierarchy, the slice is charged to the task's cgroup there
 * too (task->cgroups->subsys[ssid]->cgroup and every ancestor), like cpuacct.usage. Keys are
 * (hierarchy id, cgroup id). The idle task is skipped.
 * Reader: for ctx->cgroup (any hierarchy), prints
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
#include "stat_common.bpf.h"

#define MAX_ENTRIES 65536

/* Pinned by the loader under <bpffs>/bpffs-sync/hist_oncpu/ so restarts adopt it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct cg_key);
	__type(value, struct hist_value);
} oncpu_stats SEC(".maps");

DEFINE_CHARGE_HIERARCHY(oncpu_stats)

/* Time of the last context switch on each CPU: the start of the running slice. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} last_switch SEC(".maps");

static __always_inline int handle_switch(struct task_struct *prev)
{
	struct cgroup *cpu = NULL, *acct = NULL;
	struct task_struct *task;
	__u64 now, *last, delta;
	__u32 zero = 0;

	now = bpf_ktime_get_ns();
	last = bpf_map_lookup_elem(&last_switch, &zero);
	if (!last)
		return 0;
	delta = *last ? now - *last : 0;
	*last = now;
	task = kern_cast(prev, struct task_struct);
	if (!delta || task->pid == 0)
		return 0;

	charge_hierarchy(task->cgroups->dfl_cgrp, delta);
	/* cgroup v1: the task's cgroups in the cpu and cpuacct hierarchies, once when co-mounted. */
	if (bpf_core_enum_value_exists(enum cgroup_subsys_id, cpu_cgrp_id))
		cpu = task_v1_cgroup(prev, bpf_core_enum_value(enum cgroup_subsys_id, cpu_cgrp_id));
	if (bpf_core_enum_value_exists(enum cgroup_subsys_id, cpuacct_cgrp_id))
		acct = task_v1_cgroup(prev, bpf_core_enum_value(enum cgroup_subsys_id, cpuacct_cgrp_id));
	charge_hierarchy(cpu, delta);
	if (acct != cpu)
		charge_hierarchy(acct, delta);
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
	struct hist_value *st;
	struct cg_key key;

	if (!cgrp)
		return 0;
	cg_key_set(&key, cgrp);
	st = bpf_map_lookup_elem(&oncpu_stats, &key);
	BPF_SEQ_PRINTF(seq, "cgroup_id: %llu\n", key.cgroup_id);
	BPF_SEQ_PRINTF(seq, "total_ns: %llu\n", st ? st->total_ns : 0);
	BPF_SEQ_PRINTF(seq, "slices: %llu\n", st ? st->count : 0);
	if (st)
		print_log2_hist(seq, st->slots, "     usecs               : count    distribution\n");
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
