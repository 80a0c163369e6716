/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The report's knob read in a hot path (issue 22, item 5): a per-cgroup u64 knob read by a BPF
 * program on tp_btf/sched_switch for the cgroup of the task switched in, two ways (three on a
 * kernel whose cgroup stat files take writes), each timed with bpf_ktime_get_ns() around the read
 * alone:
 *
 *   ROUTE_XATTR  bpf_cgroup_read_xattr(cgrp, "user.bpffs_sync_knob", 8-byte dynptr): the cgroupfs
 *                user.* xattr the maintainer suggested (a kfunc since 6.16);
 *   ROUTE_MAP    bpf_map_lookup_elem(&knobs, {hierarchy 0, cgrp->kn->id}) and the u64 copied out;
 *   ROUTE_CLOCK  nothing between the two clock reads: the clock pair's own cost, the floor under
 *                both (measured in the same events, so the reader can see how much of each is clock);
 *   ROUTE_STORAGE bpf_cgrp_storage_get(&file_knobs, cgrp, 0, 0) and the u64 copied out: where
 *                Approach 1's knob file (knob_file below, on a BPF_F_CGROUP_STAT_WRITE link) keeps
 *                what was written to it. Only when knob_config[1] is set (user space linked
 *                knob_file: a kernel with kernel-approach1 patch 13); else it is skipped.
 *
 * Each timed region goes from the cgroup pointer to the u64 in hand: the xattr route includes making
 * its dynptr over the destination, the map route its key from cgrp->kn->id and the copy out, the
 * storage route its copy out.
 *
 * Only switches to a task of the cgroup `knob_config[0]` names are sampled (user space runs a ping-pong
 * there). The routes run in every sampled event in a rotating order (event count mod 4), so no
 * route always runs first with a cold cache. Samples go to samples[cpu]: sched_switch runs with
 * preemption off, so a CPU's slot has one writer at a time; a full slot stops sampling on that CPU.
 * Every knob route must read the same value (the same 8 bytes, stored each way by user space):
 * each keeps the last value it read and counts its failures.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "stat_common.h"

#define ROUTE_CLOCK 0
#define ROUTE_XATTR 1
#define ROUTE_MAP 2
#define ROUTE_STORAGE 3
#define ROUTES 4
#define KNOB_SAMPLES 4096	/* per route per CPU */
#define KNOB_CPUS 64		/* CPUs past this are not sampled */

extern int bpf_cgroup_read_xattr(struct cgroup *cgroup, const char *name__str,
				 struct bpf_dynptr *value_p) __ksym __weak;

struct knob_samples {
	__u32 n[ROUTES];		/* samples taken */
	__u32 errors[ROUTES];		/* reads that failed (xattr: < 8 bytes; map, storage: no entry) */
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
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} knob_config SEC(".maps");	/* [0]: the sampled cgroup's id (0: sample nothing); [1]: storage route on */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct cg_key);
	__type(value, __u64);
} knobs SEC(".maps");

/* The knob Approach 1's file keeps (knob_file), per cgroup */
struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} file_knobs SEC(".maps");

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

static __always_inline void time_storage(struct knob_samples *s, struct cgroup *cgrp, bool on)
{
	__u64 value = 0, t0, t1, *v;

	if (!on)
		return;
	t0 = bpf_ktime_get_ns();
	v = bpf_cgrp_storage_get(&file_knobs, cgrp, 0, 0);
	if (v)
		value = *v;
	t1 = bpf_ktime_get_ns();
	keep(s, ROUTE_STORAGE, t0, t1, value, v != NULL);
}

/*
 * One sampled switch. with_xattr is a constant of each program: knob_switch_nox, for a kernel whose
 * BTF has no bpf_cgroup_read_xattr (a config without CONFIG_BPF_LSM, whose fs kfuncs it is), has no
 * call to it left for the verifier to refuse; user space loads the one that fits.
 */
static __always_inline int sample(struct task_struct *next, bool with_xattr)
{
	struct knob_samples *s;
	struct cgroup *cgrp;
	__u32 zero = 0, one = 1, cpu;
	__u64 *want, *storage;
	bool on;

	want = bpf_map_lookup_elem(&knob_config, &zero);
	storage = bpf_map_lookup_elem(&knob_config, &one);
	on = storage && *storage;
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
		if (with_xattr)
			time_xattr(s, cgrp);
		time_map(s, cgrp);
		time_storage(s, cgrp, on);
		break;
	case 1:
		if (with_xattr)
			time_xattr(s, cgrp);
		time_map(s, cgrp);
		time_storage(s, cgrp, on);
		time_clock(s);
		break;
	case 2:
		time_map(s, cgrp);
		time_storage(s, cgrp, on);
		time_clock(s);
		if (with_xattr)
			time_xattr(s, cgrp);
		break;
	default:
		time_storage(s, cgrp, on);
		time_clock(s);
		if (with_xattr)
			time_xattr(s, cgrp);
		time_map(s, cgrp);
	}
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(knob_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return sample(next, true);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(knob_switch_nox, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	return sample(next, false);
}

/*
 * The knob as an Approach 1 file (issue 20 item 2, issue 22 item 7): a cgroup stat program for a
 * link made with BPF_F_CGROUP_STAT_WRITE (kernel-approach1 patch 13), modelled on the series'
 * selftest cgroup_knob. A write(2) of exactly 8 bytes to <bpffs>/cgroup/<path>/<name> stores them,
 * as a u64, in the cgroup's storage (file_knobs, which ROUTE_STORAGE reads); anything else fails
 * the write with -EINVAL. A read prints the knob in decimal, 0 when unset.
 *
 * Its context is the series' struct bpf_cgroup_stat_ctx (review 6's API: ctx->data, read-only
 * memory of the bytes written then zeros, NULL for a read; ctx->size, the bytes written): only a
 * kernel carrying patch 13 has it in its BTF, and the vmlinux.h this is built against may be a
 * stock kernel's, so it is declared here with preserve_access_index (CO-RE: the field offsets come
 * from the running kernel's BTF at load). User space loads this program (autoload) only when that
 * BTF has BPF_F_CGROUP_STAT_WRITE; libbpf relocates no program it does not load.
 */
#define KNOB_EINVAL 22
#define KNOB_ENOMEM 12

struct bpf_cgroup_stat_ctx___knob {
	struct bpf_iter_meta *meta;
	struct cgroup *cgroup;
	const char *data;	/* NULL for a read */
	__u32 size;		/* bytes written */
} __attribute__((preserve_access_index));

SEC("cgroup/stat")
int knob_file(struct bpf_cgroup_stat_ctx___knob *ctx)
{
	const char *data = ctx->data;
	struct cgroup *cgrp = ctx->cgroup;
	__u64 val = 0, *v;

	if (!cgrp)
		return 0;
	if (!data) {
		v = bpf_cgrp_storage_get(&file_knobs, cgrp, 0, 0);
		BPF_SEQ_PRINTF(ctx->meta->seq, "%llu\n", v ? *v : 0);
		return 0;
	}
	if (ctx->size != sizeof(val))
		return -KNOB_EINVAL;
	__builtin_memcpy(&val, data, sizeof(val));	/* a constant offset into read-only memory */
	v = bpf_cgrp_storage_get(&file_knobs, cgrp, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!v)
		return -KNOB_ENOMEM;
	*v = val;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
