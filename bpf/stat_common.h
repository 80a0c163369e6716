/* SPDX-License-Identifier: GPL-2.0 */
/* Layouts shared by the BPF programs and bpffs_sync (which reads them with ctypes). */
#ifndef __STAT_COMMON_H
#define __STAT_COMMON_H

#define MAX_SLOTS 27	/* log2 buckets: the last one holds >= 2^26 units (67 s in usecs) */

/*
 * Key of every per-cgroup stats map. v1 and v2 cgroup ids are separate spaces (each hierarchy
 * numbers its kernfs nodes from 1), so a cgroup is (hierarchy id, cgroup id): hierarchy 0 is the
 * v2 (default) hierarchy, v1 hierarchies have the ids /proc/cgroups and /proc/<pid>/cgroup print.
 */
struct cg_key {
	__u32 hierarchy_id;	/* cgroup->root->hierarchy_id */
	__u32 pad;		/* always 0 */
	__u64 cgroup_id;	/* cgroup->kn->id: the directory's inode number in cgroupfs */
};

/* A log2 histogram of event durations with their sum and count: what charge_hierarchy() adds to. */
struct hist_value {
	__u64 total_ns;
	__u64 count;
	__u64 slots[MAX_SLOTS];	/* log2 of the duration in usecs */
};

#endif /* __STAT_COMMON_H */
