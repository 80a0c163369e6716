// SPDX-License-Identifier: GPL-2.0
/*
 * The maintainer's alternatives to a stat file, for `bpffs-sync report`:
 *
 * stat_by_id: a BPF_PROG_TYPE_SYSCALL program, pinned and run with bpf_prog_test_run_opts().
 *   In:  struct stat_args.key (hierarchy id, cgroup id) in the context.
 *   Out: found = 1 and the cgroup's raw struct hist_value copied into the context (the kernel
 *        copies the context back to the caller), found = 0 when the cgroup has no entry yet.
 *   It shares hist_oncpu's stats map: the loader pins oncpu_stats at the path the mirror pinned
 *   it at, so the program reads what the mirror's files print (user space formats it).
 *
 * stat_text: the same program writing the cgroup's full text into the context instead: the bytes
 *   hist_oncpu's reader prints into the mirror's file (cgroup_id, total_ns, slices, the log2
 *   histogram), made with bpf_snprintf() and the same formats as print_log2_hist(), so the report
 *   compares BPF_PROG_RUN and the file at equal work (the report checks the bytes are equal).
 *   In:  struct text_args.key. Out: found, len (bytes of text, no NUL) and text.
 *
 * total_only: a cgroup iterator reader printing one number, the cgroup's total_ns ("<ns>\n"): the
 *   file side of the "raw value" comparison (BPF_PROG_RUN and a map lookup return the raw struct).
 *
 * knobs: a pinned hash (struct cg_key -> __u64), the "pinned map update" way of setting a
 *   per-cgroup knob, compared with cgroupfs user.* xattrs.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "stat_common.h"
#include "oncpu_stats.bpf.h"

#define TEXT_MAX 4096	/* the text of one cgroup: at most 4 + MAX_SLOTS lines of ~80 bytes */
#define LINE_MAX 128	/* one bpf_snprintf() call writes at most this (an 80-byte row) */
#define HIST_BAR_WIDTH 40
#define COPY_CHUNK 64

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct cg_key);
	__type(value, __u64);
} knobs SEC(".maps");

struct stat_args {
	struct cg_key key;	/* in */
	__u32 found;		/* out */
	__u32 pad;
	struct hist_value value;	/* out */
};

SEC("syscall")
int stat_by_id(struct stat_args *ctx)
{
	struct hist_value *v;
	struct cg_key key;

	key.hierarchy_id = ctx->key.hierarchy_id;
	key.pad = 0;
	key.cgroup_id = ctx->key.cgroup_id;
	v = bpf_map_lookup_elem(&oncpu_stats, &key);
	if (!v) {
		ctx->found = 0;
		return 0;
	}
	ctx->found = 1;
	__builtin_memcpy(&ctx->value, v, sizeof(*v));
	return 0;
}

struct text_args {
	struct cg_key key;	/* in */
	__u32 found;		/* out */
	__u32 len;		/* out: bytes of text */
	char text[TEXT_MAX];	/* out */
};

/*
 * Where the text is made: a map value takes a variable offset, the context does not. Per CPU: the
 * test run pins the program to its CPU (migrate_disable), but a reader preempted there could have
 * its text overwritten by another reader's run on the same CPU; the report runs one reader at a
 * time (and its equal-work check would see a mangled text).
 */
struct scratch {
	char buf[TEXT_MAX + LINE_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} text_scratch SEC(".maps");

/* stat_common.bpf.h's bar strings: the same suffixes make the same bars. */
static const char hist_stars[HIST_BAR_WIDTH + 1] = "****************************************";
static const char hist_spaces[HIST_BAR_WIDTH + 1] = "                                        ";
static const char hist_header[] = "     usecs               : count    distribution\n";

/* Append one formatted line at *off (bpf_snprintf's count includes the NUL, dropped here); off
 * stays below TEXT_MAX: a line that does not fit is not appended (it cannot happen: see TEXT_MAX). */
#define APPEND(s, off, fmt, args...)								\
	({											\
		__u32 __at = *(off);								\
		long __n;									\
												\
		if (__at <= TEXT_MAX - LINE_MAX) {						\
			barrier_var(__at);	/* keep the mask: the verifier needs it */	\
			__n = BPF_SNPRINTF(&(s)->buf[__at & (TEXT_MAX - 1)], LINE_MAX, fmt, args); \
			if (__n > 0 && __n <= LINE_MAX)					\
				*(off) = __at + __n - 1;					\
		}										\
	})

struct hist_ctx {
	struct scratch *s;
	struct hist_value *v;
	__u64 max;
	__u32 off;
	int idx_max;
};

/* One histogram row (print_log2_hist's), in a bpf_loop() callback: verified once, not 27 times. */
static long hist_row(__u32 i, void *data)
{
	struct hist_ctx *h = data;
	__u64 low, high, val, stars;

	if ((int)i > h->idx_max || !h->max)
		return 1;
	barrier_var(i);
	if (i >= MAX_SLOTS)	/* for the verifier: idx_max < MAX_SLOTS already */
		return 1;
	val = h->v->slots[i];
	low = (1ULL << (i + 1)) >> 1;
	high = (1ULL << (i + 1)) - 1;
	if (low == high)
		low -= 1;
	stars = val * HIST_BAR_WIDTH / h->max;
	if (stars > HIST_BAR_WIDTH)
		stars = HIST_BAR_WIDTH;
	APPEND(h->s, &h->off, "%10llu -> %-10llu : %-8llu |%s%s|\n", low, high, val,
	       &hist_stars[HIST_BAR_WIDTH - stars], &hist_spaces[stars]);
	return 0;
}

SEC("syscall")
int stat_text(struct text_args *ctx)
{
	struct hist_ctx h = { .idx_max = -1 };
	struct cg_key key;
	__u32 zero = 0, off;
	__u64 val;
	int i;

	ctx->found = 0;
	ctx->len = 0;
	h.s = bpf_map_lookup_elem(&text_scratch, &zero);
	if (!h.s)
		return 0;
	key.hierarchy_id = ctx->key.hierarchy_id;
	key.pad = 0;
	key.cgroup_id = ctx->key.cgroup_id;
	h.v = bpf_map_lookup_elem(&oncpu_stats, &key);
	/* hist_oncpu's reader prints the three lines for a cgroup without an entry too, with zeros */
	APPEND(h.s, &h.off, "cgroup_id: %llu\ntotal_ns: %llu\nslices: %llu\n", key.cgroup_id,
	       h.v ? h.v->total_ns : 0, h.v ? h.v->count : 0);
	if (h.v) {
		ctx->found = 1;
		for (i = 0; i < MAX_SLOTS; i++) {
			val = h.v->slots[i];
			if (val)
				h.idx_max = i;
			if (val > h.max)
				h.max = val;
		}
	}
	if (h.v && h.idx_max >= 0) {
		APPEND(h.s, &h.off, "%s", hist_header);
		bpf_loop(MAX_SLOTS, hist_row, &h, 0);
	}
	off = h.off;
	barrier_var(off);
	off &= TEXT_MAX - 1;
	/* Into the context in 64-byte chunks at constant offsets (a helper cannot write to a SYSCALL
	 * program's context, and a variable offset into it is refused), only as far as the text goes. */
#pragma clang loop unroll(full)
	for (i = 0; i < TEXT_MAX / COPY_CHUNK; i++) {
		if (i * COPY_CHUNK >= off)
			break;
		__builtin_memcpy(&ctx->text[i * COPY_CHUNK], &h.s->buf[i * COPY_CHUNK], COPY_CHUNK);
	}
	ctx->len = off;
	return 0;
}

SEC("iter/cgroup")
int total_only(struct bpf_iter__cgroup *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct cgroup *cgrp = ctx->cgroup;
	struct hist_value *v;
	struct cg_key key;

	if (!cgrp)
		return 0;
	v = oncpu_lookup(cgrp, &key);
	BPF_SEQ_PRINTF(seq, "%llu\n", v ? v->total_ns : 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
