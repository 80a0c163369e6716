/* SPDX-License-Identifier: GPL-2.0 */
/* cgroup_tree: the record layout shared by cgroup_tree.bpf.c and bpffs_sync/mirror/cgtree.py. */
#ifndef CGROUP_TREE_H
#define CGROUP_TREE_H

#define CGROUP_TREE_NAME_MAX 255 /* NAME_MAX: a kernfs name is one path component */

/* One cgroup, little endian, followed by name_len bytes of its kernfs name (no NUL). */
struct cgroup_tree_rec {
	__u64 id;        /* cgroup id: its kernfs node id, the directory's inode number */
	__u64 parent_id; /* 0 for the root of a hierarchy */
	__u16 level;     /* cgroup->level: 0 at the hierarchy's root */
	__u16 name_len;
	__u8 name[CGROUP_TREE_NAME_MAX + 1];
} __attribute__((packed));

#define CGROUP_TREE_HDR 20 /* offsetof(struct cgroup_tree_rec, name) */

/* Written to the iterator's seq_file once, after the walk (the NULL-cgroup epilogue). */
struct cgroup_tree_summary {
	__u64 records; /* records written to the ring buffer by this walk */
	__u64 dropped; /* records the ring buffer had no room for (the reader grows the ring) */
	__u64 digest;  /* of every record in order: equal digests, equal trees (the reader skips the ring) */
};

#endif
