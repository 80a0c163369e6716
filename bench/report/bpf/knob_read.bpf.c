/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The report's knob read in a hot path (issue 22, item 5): a per-cgroup u64 knob read by a BPF
 * program on tp_btf/sched_switch for the cgroup of the task switched in, two ways, each timed with
 * bpf_ktime_get_ns() around the read alone:
 *
 *   ROUTE_XATTR  bpf_cgroup_read_xattr(cgrp, "user.bpffs_sync_knob", 8-byte dynptr): the cgroupfs
 *                user.* xattr the maintainer suggested (a kfunc since 6.16);
 *   ROUTE_MAP    bpf_map_lookup_elem(&knobs, {hierarchy 0, cgrp->kn->id}) and the u64 copied out;
 *   ROUTE_CLOCK  nothing between the two clock reads: the clock pair's own cost, the floor under
 *                both (measured in the same events, so the reader can see how much of each is clock).
 *
 * Each timed region goes from the cgroup pointer to the u64 in hand: the xattr route includes making
 * its dynptr over the destination, the map route its key from cgrp->kn->id and the copy out.
 *
 * Only switches to a task of the cgroup `knob_config[0]` names are sampled (user space runs a ping-pong
 * there). The three routes run in every sampled event in a rotating order (event count mod 3), so
 * no route always runs first with a cold cache. Samples go to samples[cpu]: sched_switch runs with
 * preemption off, so a CPU's slot has one writer at a time; a full slot stops sampling on that CPU.
 * Both routes must read the same value (the same 8 bytes, stored both ways by user space): each
 * keeps the last value it read and counts its failures.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "stat_common.h"

#define ROUTE_CLOCK 0
#define ROUTE_XATTR 1
#define ROUTE_MAP 2
#define ROUTES 3
#define KNOB_SAMPLES 4096	/* per route per CPU */
#define KNOB_CPUS 64		/* CPUs past this are not sampled */

extern int bpf_cgroup_read_xattr(struct cgroup *cgroup, const char *name__str,
				 struct bpf_dynptr *value_p) __ksym __weak;

struct knob_samples {
	__u32 n[ROUTES];		/* samples taken */
	__u32 errors[ROUTES];		/* reads that failed (xattr: < 8 bytes; map: no entry) */
	__u64 last[ROUTES];		/* the value the route read last */
	__u64 events;			/* sampled switches */
	__u64 xattr_buf;		/* the xattr's bytes (a dynptr over memory must not be the stack) */
	__u32 ns[ROUTES][KNOB_SAMPLES];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KNOB_CPUS);
	__type(key, __u32);
	__type(value, struct knob_samples);
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} knob_config SEC(".maps");	/* [0]: the sampled cgroup's id (0: sample nothing) */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct cg_key);
	__type(value, __u64);
} knobs SEC(".maps");

static __always_inline void keep(struct knob_samples *s, int route, __u64 t0, __u64 t1, __u64 value, bool ok)
{
	__u32 i = s->n[route];

	if (i >= KNOB_SAMPLES)
		return;
	s->ns[route][i] = t1 - t0;
	s->n[route] = i + 1;
	s->last[route] = value;
	if (!ok)
		s->errors[route]++;
}

static __always_inline void time_clock(struct knob_samples *s)
{
	__u64 t0 = bpf_ktime_get_ns();
	__u64 t1 = bpf_ktime_get_ns();

	keep(s, ROUTE_CLOCK, t0, t1, 0, true);
}

static __always_inline void time_xattr(struct knob_samples *s, struct cgroup *cgrp)
{
	struct bpf_dynptr dp;
	__u64 t0, t1;
	int ret;

	s->xattr_buf = 0;
	t0 = bpf_ktime_get_ns();
	bpf_dynptr_from_mem(&s->xattr_buf, sizeof(s->xattr_buf), 0, &dp);
	ret = bpf_cgroup_read_xattr(cgrp, "user.bpffs_sync_knob", &dp);
	t1 = bpf_ktime_get_ns();
	keep(s, ROUTE_XATTR, t0, t1, s->xattr_buf, ret == sizeof(s->xattr_buf));
}

static __always_inline void time_map(struct knob_samples *s, struct cgroup *cgrp)
{
	struct cg_key key = {};
	__u64 value = 0, t0, t1, *v;

	t0 = bpf_ktime_get_ns();
	key.cgroup_id = cgrp->kn->id;
	v = bpf_map_lookup_elem(&knobs, &key);
	if (v)
		value = *v;
	t1 = bpf_ktime_get_ns();
	keep(s, ROUTE_MAP, t0, t1, value, v != NULL);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(knob_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct knob_samples *s;
	struct cgroup *cgrp;
	__u32 zero = 0, cpu;
	__u64 *want;

	want = bpf_map_lookup_elem(&knob_config, &zero);
	cgrp = next->cgroups->dfl_cgrp;	/* RCU: the kfunc's KF_RCU argument */
	if (!want || !*want || !cgrp || cgrp->kn->id != *want)
		return 0;
	cpu = bpf_get_smp_processor_id();
	s = bpf_map_lookup_elem(&samples, &cpu);
	if (!s)
		return 0;
	switch (s->events++ % ROUTES) {
	case 0:
		time_clock(s);
		time_xattr(s, cgrp);
		time_map(s, cgrp);
		break;
	case 1:
		time_xattr(s, cgrp);
		time_map(s, cgrp);
		time_clock(s);
		break;
	default:
		time_map(s, cgrp);
		time_clock(s);
		time_xattr(s, cgrp);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
