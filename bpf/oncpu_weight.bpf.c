// SPDX-License-Identifier: GPL-2.0
/*
 * oncpu_weight: a per-cgroup knob that a second program acts on (kernel-approach1 13/15, "file
 * writes"). Kernel-only: its file takes writes, which only the Approach 1 series' links made with
 * BPF_F_CGROUP_STAT_WRITE have; a stock kernel cannot load it (programs.py refuses it there).
 *
 * Knob: a cgroup's weight, 0..1000, default 100, kept in cgroup storage (oncpu_weights, pinned by
 * the loader under <bpffs>/bpffs-sync/oncpu_weight/ like every stats map).
 * Reader/writer (SEC("cgroup/stat"), one program for both; ctx->data says which):
 *	write: the decimal weight, one optional trailing newline ("echo 200 > file"), at most 16
 *	       bytes: 0, or -EINVAL for anything else (a sign, a space, other bytes, more than 16
 *	       bytes), -ERANGE for a number above 1000 or below 0; the value is kept on any error.
 *	       Each write(2) is one run of 1 to 256 bytes (the kernel answers a write of 0 bytes
 *	       itself, and one of more than 256 with -E2BIG). Why 16: the parse is a loop the
 *	       verifier walks per byte, and its states grow with the square of the bound (16 bytes:
 *	       ~6 000 instructions processed, 256: past the verifier's 1 000 000).
 *	read:  cgroup_id: <id>		(the first line of every bpf/ stat: verify checks it)
 *	       weight: <weight>
 *	       weighted_ns: <ns>
 * Collector (tp_btf/sched_switch): the slice that just ended on this CPU (now - last switch on
 * this CPU, as hist_oncpu measures it) times the weight of the switched-out task's v2 cgroup / 100
 * is added to that cgroup's weighted_ns: the cgroup's own tasks only, not its descendants'
 * (hist_oncpu is hierarchical; a knob is per cgroup). Weight 0: weighted_ns stops growing
 * however much the cgroup runs; 200: it grows twice as fast as its on-CPU time. The idle task is
 * skipped. No raw_tp fallback: cgroup storage needs a trusted cgroup, which only tp_btf's typed
 * arguments give (prev->cgroups->dfl_cgrp, RCU-protected in a non-sleepable program).
 *
 * The program context is a kernel-internal type of the series (include/linux/bpf.h), absent from
 * a stock kernel's BTF and so from the vmlinux.h this builds with: declared here with a ___a1
 * flavour, CO-RE relocated against the running kernel's struct bpf_cgroup_stat_ctx. ctx->data is
 * read-only memory (NULL for a read) of the ctx->size bytes written, then zeros, 257 bytes in all;
 * this reads at most its first 16 (link create refuses a writable link whose program reads past
 * the buffer).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "oncpu_weight.h"

#define EINVAL 22
#define ERANGE 34
#define ENOMEM 12
#define WEIGHT_TEXT_MAX 16	/* the longest write parsed (see the file-top comment) */

struct bpf_cgroup_stat_ctx___a1 {
	struct bpf_iter_meta *meta;
	struct cgroup *cgroup;
	const char *data;	/* NULL for a read */
	__u32 size;		/* bytes written */
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_CGRP_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct weight_value);
} oncpu_weights SEC(".maps");

/* Time of the last context switch on each CPU: the start of the running slice. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} weight_last_switch SEC(".maps");

/* The weight a value holds: WEIGHT_DEFAULT until written. */
static __always_inline __u64 weight_of(const struct weight_value *v)
{
	return v && v->weight1 ? v->weight1 - 1 : WEIGHT_DEFAULT;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(weight_tp_btf, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct weight_value *v;
	__u64 now, *last, delta;
	struct cgroup *cgrp;
	__u32 zero = 0;

	now = bpf_ktime_get_ns();
	last = bpf_map_lookup_elem(&weight_last_switch, &zero);
	if (!last)
		return 0;
	delta = *last ? now - *last : 0;
	*last = now;
	if (!delta || prev->pid == 0)
		return 0;
	cgrp = prev->cgroups->dfl_cgrp;
	v = bpf_cgrp_storage_get(&oncpu_weights, cgrp, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!v)
		return 0;
	__sync_fetch_and_add(&v->weighted_ns, delta * weight_of(v) / WEIGHT_SCALE);
	return 0;
}

/*
 * 0 and the weight in *out, or -EINVAL / -ERANGE: see the file-top comment. One pass over buf's
 * first size bytes, at most WEIGHT_TEXT_MAX (a longer write is -EINVAL); the value saturates at
 * WEIGHT_MAX + 1, however many digits follow.
 */
static __always_inline int parse_weight(const char *buf, __u32 size, __u64 *out)
{
	bool negative = false;
	__u32 i, digits = 0;
	__u64 val = 0;

	if (size > WEIGHT_TEXT_MAX)
		return -EINVAL;
	for (i = 0; i < WEIGHT_TEXT_MAX; i++) {
		char c;

		if (i >= size)
			break;
		c = buf[i];
		if (c == '\n' && i + 1 == size && digits)
			break;
		if (c == '-' && i == 0) {
			negative = true;
			continue;
		}
		if (c < '0' || c > '9')
			return -EINVAL;
		digits++;
		val = val * 10 + (c - '0');
		if (val > WEIGHT_MAX)
			val = WEIGHT_MAX + 1;
	}
	if (!digits)
		return -EINVAL;
	if (negative)
		return val ? -ERANGE : -EINVAL;	/* "-0": not a weight anyone means */
	if (val > WEIGHT_MAX)
		return -ERANGE;
	*out = val;
	return 0;
}

SEC("cgroup/stat")
int oncpu_weight(struct bpf_cgroup_stat_ctx___a1 *ctx)
{
	const char *data = ctx->data;
	struct cgroup *cgrp = ctx->cgroup;
	struct weight_value *v;
	__u64 weight;
	int err;

	if (!cgrp)
		return 0;
	if (!data) {
		struct seq_file *seq = ctx->meta->seq;

		v = bpf_cgrp_storage_get(&oncpu_weights, cgrp, 0, 0);
		BPF_SEQ_PRINTF(seq, "cgroup_id: %llu\n", BPF_CORE_READ(cgrp, kn, id));
		BPF_SEQ_PRINTF(seq, "weight: %llu\n", weight_of(v));
		BPF_SEQ_PRINTF(seq, "weighted_ns: %llu\n", v ? v->weighted_ns : 0);
		return 0;
	}
	err = parse_weight(data, ctx->size, &weight);
	if (err)
		return err;
	v = bpf_cgrp_storage_get(&oncpu_weights, cgrp, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!v)
		return -ENOMEM;
	v->weight1 = weight + 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
