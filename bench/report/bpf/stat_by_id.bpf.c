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
 * knobs: a pinned hash (struct cg_key -> __u64), the "pinned map update" way of setting a
 *   per-cgroup knob, compared with cgroupfs user.* xattrs.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "stat_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);	/* hist_oncpu.bpf.c's MAX_ENTRIES: libbpf reuses the pin */
	__type(key, struct cg_key);
	__type(value, struct hist_value);
} oncpu_stats SEC(".maps");

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

char LICENSE[] SEC("license") = "GPL";
