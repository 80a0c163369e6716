// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup_tree: the whole cgroup tree below a cgroup, in one read, for the daemon's periodic pass.
 *
 * An iter/cgroup program linked with BPF_CGROUP_ITER_DESCENDANTS_PRE to the tree's root cgroup
 * (a v2 or a v1 cgroup fd). The kernel walks the subtree under cgroup_mutex, pre-order (a parent
 * before its children), skipping dead cgroups; for each one this program writes a
 * struct cgroup_tree_rec (id, parent id, level, the kernfs name byte for byte) into the ring
 * buffer `tree`. The seq_file itself only gets the epilogue's struct cgroup_tree_summary: the
 * seq_file buffer (8 pages) cannot hold a large tree, and a cgroup iterator cannot resume in a
 * second read() (cgroup_mutex is dropped in between: EOPNOTSUPP), while the ring buffer has no
 * such limit. A full ring counts `dropped` and the reader falls back to walking cgroupfs.
 *
 * The summary also carries a digest of every record in walk order (a 64-bit multiply-xorshift
 * mix of each field and name byte), so a reader that only wants to know whether the tree changed
 * since its last walk can skip the ring (move its consumer position to the producer's).
 *
 * One walk at a time per loaded object: the counters are globals, reset by the epilogue, and the
 * reader consumes the ring after each read (bpffs_sync/mirror/cgtree.py holds a lock).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "cgroup_tree.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); /* the loader sizes it (bpf_map__set_max_entries) */
} tree SEC(".maps");

__u64 records = 0;
__u64 dropped = 0;
__u64 digest = 0;

static __always_inline __u64 mix(__u64 h, __u64 v)
{
	h = (h ^ v) * 0x9E3779B97F4A7C15ULL;
	return h ^ (h >> 29);
}

SEC("iter/cgroup")
int cgroup_tree(struct bpf_iter__cgroup *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct cgroup *cgrp = ctx->cgroup;
	struct cgroup_tree_summary sum;
	struct cgroup_tree_rec rec;
	struct cgroup *parent;
	const char *name;
	long len;

	if (!cgrp) { /* epilogue: the walk is over */
		sum.records = records;
		sum.dropped = dropped;
		sum.digest = digest;
		records = 0;
		dropped = 0;
		digest = 0;
		bpf_seq_write(seq, &sum, sizeof(sum));
		return 0;
	}
	rec.id = BPF_CORE_READ(cgrp, kn, id);
	/* cgroup.self is the first member of struct cgroup: the parent css is the parent cgroup */
	parent = (struct cgroup *)BPF_CORE_READ(cgrp, self.parent);
	rec.parent_id = parent ? BPF_CORE_READ(parent, kn, id) : 0;
	rec.level = BPF_CORE_READ(cgrp, level);
	name = BPF_CORE_READ(cgrp, kn, name);
	len = bpf_probe_read_kernel_str(rec.name, sizeof(rec.name), name);
	if (len < 1) {
		dropped++;
		return 0;
	}
	len -= 1; /* the NUL */
	if (len > CGROUP_TREE_NAME_MAX)
		len = CGROUP_TREE_NAME_MAX;
	rec.name_len = len;
	digest = mix(mix(mix(digest, rec.id), rec.parent_id), ((__u64)rec.level << 16) | rec.name_len);
	for (int i = 0; i < CGROUP_TREE_NAME_MAX; i++) {
		if (i >= len)
			break;
		digest = mix(digest, rec.name[i]);
	}
	if (bpf_ringbuf_output(&tree, &rec, CGROUP_TREE_HDR + len, BPF_RB_NO_WAKEUP))
		dropped++;
	else
		records++;
	return 0;
}
