// SPDX-License-Identifier: GPL-2.0
/*
 * memcg_histo: per memory cgroup usage, limit, failcnt, peak, and a log2 histogram of memcg
 * reclaim stall time.
 *
 * Reader: for ctx->cgroup, reads the memcg page counter by CO-RE (cgrp->subsys[memory_cgrp_id]
 * is the mem_cgroup's css) and prints the numbers the v1 files show (mm/memcontrol-v1.c,
 * mem_cgroup_read_u64()):
 *	cgroup_id: <id>
 *	usage_bytes: <memory.usage.counter * PAGE_SIZE>        memory.usage_in_bytes / memory.current
 *	limit_bytes: <memory.max * PAGE_SIZE>                  memory.limit_in_bytes / memory.max
 *	max_usage_bytes: <memory.watermark * PAGE_SIZE>        memory.max_usage_in_bytes
 *	failcnt: <memory.failcnt>                              memory.failcnt (v1 only counts it)
 *	reclaim_ns: <ns>                                       time in memcg direct reclaim
 *	reclaims: <n>
 * followed by the histogram of reclaim stall lengths in usecs (nothing when there were none).
 * The root memcg's memory.usage_in_bytes is not its page counter but an approximation from
 * global vmstat (mem_cgroup_usage()), which BTF does not expose; the root shows its page
 * counter, the sum of what its descendants are charged. A cgroup whose hierarchy does not carry
 * the memory controller prints only cgroup_id and the reclaim lines.
 *
 * Collector: vmscan's mm_vmscan_memcg_reclaim_begin/end (tp_btf, raw_tp fallback) bracket one
 * try_to_free_mem_cgroup_pages() in the charging task's context. The tracepoints carry no memcg,
 * so the stall is charged to the task's memory cgroup and its ancestors (the memcg over its
 * limit is one of them): the figures are hierarchical.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "memcg_histo.h"
#include "stat_common.bpf.h"

#define MAX_ENTRIES 65536
#define MAX_RECLAIMERS 10240

/* Pinned by the loader under <bpffs>/bpffs-sync/memcg_histo/ so restarts adopt it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ENTRIES);
	__type(key, struct cg_key);
	__type(value, struct hist_value);
} memcg_stats SEC(".maps");

DEFINE_CHARGE_HIERARCHY(memcg_stats)

/* Start of the reclaim episode each thread is in (thread id -> ns). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_RECLAIMERS);
	__type(key, __u32);
	__type(value, __u64);
} reclaim_start SEC(".maps");

static __always_inline int memory_ssid(void)
{
	if (!bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id))
		return -1;
	return bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
}

static __always_inline int reclaim_begin(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();

	bpf_map_update_elem(&reclaim_start, &tid, &now, BPF_ANY);
	return 0;
}

static __always_inline int reclaim_end(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct task_struct *task;
	struct cgroup *cgrp;
	__u64 *start, delta;
	int ssid;

	start = bpf_map_lookup_elem(&reclaim_start, &tid);
	if (!start)
		return 0;
	delta = bpf_ktime_get_ns() - *start;
	bpf_map_delete_elem(&reclaim_start, &tid);
	ssid = memory_ssid();
	if (ssid < 0 || ssid >= CGROUP_SUBSYS_COUNT)
		return 0;
	task = (struct task_struct *)bpf_get_current_task();
	cgrp = BPF_CORE_READ(task, cgroups, subsys[ssid], cgroup);
	charge_hierarchy(cgrp, delta);
	return 0;
}

SEC("tp_btf/mm_vmscan_memcg_reclaim_begin")
int BPF_PROG(memcg_begin_btf, int order, gfp_t gfp_flags)
{
	return reclaim_begin();
}

SEC("tp_btf/mm_vmscan_memcg_reclaim_end")
int BPF_PROG(memcg_end_btf, unsigned long nr_reclaimed)
{
	return reclaim_end();
}

SEC("raw_tp/mm_vmscan_memcg_reclaim_begin")
int BPF_PROG(memcg_begin_raw, int order, gfp_t gfp_flags)
{
	return reclaim_begin();
}

SEC("raw_tp/mm_vmscan_memcg_reclaim_end")
int BPF_PROG(memcg_end_raw, unsigned long nr_reclaimed)
{
	return reclaim_end();
}

/* The mem_cgroup of @cgrp, or NULL when its hierarchy does not carry the memory controller. */
static __always_inline struct mem_cgroup *cgroup_memcg(struct cgroup *cgrp)
{
	struct cgroup_subsys_state *css;
	int ssid = memory_ssid();

	if (ssid < 0 || ssid >= CGROUP_SUBSYS_COUNT)
		return NULL;
	css = BPF_CORE_READ(cgrp, subsys[ssid]);
	return css ? container_of(css, struct mem_cgroup, css) : NULL;
}

SEC(STAT_SEC)
int memcg_histo(struct bpf_iter__cgroup *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct cgroup *cgrp = ctx->cgroup;
	struct mem_cgroup *memcg;
	struct hist_value *st;
	struct cg_key key;

	if (!cgrp)
		return 0;
	cg_key_set(&key, cgrp);
	BPF_SEQ_PRINTF(seq, "cgroup_id: %llu\n", key.cgroup_id);
	memcg = cgroup_memcg(cgrp);
	if (memcg) {
		BPF_SEQ_PRINTF(seq, "usage_bytes: %llu\n",
			       (__u64)BPF_CORE_READ(memcg, memory.usage.counter) * MEMCG_PAGE_SIZE);
		BPF_SEQ_PRINTF(seq, "limit_bytes: %llu\n",
			       (__u64)BPF_CORE_READ(memcg, memory.max) * MEMCG_PAGE_SIZE);
		BPF_SEQ_PRINTF(seq, "max_usage_bytes: %llu\n",
			       (__u64)BPF_CORE_READ(memcg, memory.watermark) * MEMCG_PAGE_SIZE);
		BPF_SEQ_PRINTF(seq, "failcnt: %llu\n", (__u64)BPF_CORE_READ(memcg, memory.failcnt));
	}
	st = bpf_map_lookup_elem(&memcg_stats, &key);
	BPF_SEQ_PRINTF(seq, "reclaim_ns: %llu\n", st ? st->total_ns : 0);
	BPF_SEQ_PRINTF(seq, "reclaims: %llu\n", st ? st->count : 0);
	if (st)
		print_log2_hist(seq, st->slots, "     usecs               : count    distribution\n");
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
