// SPDX-License-Identifier: GPL-2.0
/*
 * One cgroup iterator over every cgroup of a subtree, for the report's scrape table
 * (bpffs_sync/measure/report/scrape.py): a monitoring scrape of hist_oncpu's figures in one walk.
 *
 * Both programs are iter/cgroup, linked with BPF_CGROUP_ITER_DESCENDANTS_PRE to the subtree's root
 * cgroup; the kernel walks it pre-order under cgroup_mutex. Each reads the cgroup's entry of
 * hist_oncpu's stats map (the loader reuses the map pinned by the mirror, as stat_by_id does):
 *
 * scrape_lines: one text line per cgroup, "<cgroup id> <total_ns> <slices>\n", into the seq_file.
 *   A seq_file holds 8 pages per read(), and a cgroup iterator cannot resume in a second read()
 *   (cgroup_mutex was dropped in between: EOPNOTSUPP), so this works while the lines fit one read.
 * scrape_ring: one struct scrape_rec per cgroup into the ring buffer `records`; the seq_file gets
 *   only the epilogue's struct scrape_summary (records, dropped), so the walk has no such bound
 *   (what bpf/cgroup_tree.bpf.c does for the daemon's tree walk). One walk at a time per loaded
 *   object: the counters are globals, reset by the epilogue.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "stat_common.h"
#include "oncpu_stats.bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);	/* 4 MiB: some 130 000 records */
} records SEC(".maps");

struct scrape_rec {
	__u64 cgroup_id;
	__u64 total_ns;
	__u64 slices;
};

struct scrape_summary {
	__u64 records;
	__u64 dropped;
};

__u64 nrecords = 0;
__u64 ndropped = 0;

/* @cgrp's figures from the stats map (zeros when it has no entry, as the mirror's file prints). */
static __always_inline void scrape_read(struct cgroup *cgrp, struct scrape_rec *rec)
{
	struct cg_key key;
	struct hist_value *st = oncpu_lookup(cgrp, &key);

	rec->cgroup_id = key.cgroup_id;
	rec->total_ns = st ? st->total_ns : 0;
	rec->slices = st ? st->count : 0;
}

SEC("iter/cgroup")
int scrape_lines(struct bpf_iter__cgroup *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct cgroup *cgrp = ctx->cgroup;
	struct scrape_rec rec;

	if (!cgrp)
		return 0;
	scrape_read(cgrp, &rec);
	BPF_SEQ_PRINTF(seq, "%llu %llu %llu\n", rec.cgroup_id, rec.total_ns, rec.slices);
	return 0;
}

SEC("iter/cgroup")
int scrape_ring(struct bpf_iter__cgroup *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct cgroup *cgrp = ctx->cgroup;
	struct scrape_summary sum;
	struct scrape_rec rec;

	if (!cgrp) { /* epilogue: the walk is over */
		sum.records = nrecords;
		sum.dropped = ndropped;
		nrecords = 0;
		ndropped = 0;
		bpf_seq_write(seq, &sum, sizeof(sum));
		return 0;
	}
	scrape_read(cgrp, &rec);
	if (bpf_ringbuf_output(&records, &rec, sizeof(rec), BPF_RB_NO_WAKEUP))
		ndropped++;
	else
		nrecords++;
	return 0;
}
