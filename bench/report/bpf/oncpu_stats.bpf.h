/* SPDX-License-Identifier: GPL-2.0 */
/*
 * hist_oncpu's stats map as the report's programs see it (stat_by_id.bpf.c, scrape.bpf.c): the
 * loader sets the pin path to where the mirror pinned the map, so libbpf reuses that map (the
 * definition must match hist_oncpu.bpf.c's: a hash of struct cg_key -> struct hist_value, its
 * MAX_ENTRIES), and the key a cgroup has in it.
 */
#ifndef __ONCPU_STATS_BPF_H
#define __ONCPU_STATS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "stat_common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);	/* hist_oncpu.bpf.c's MAX_ENTRIES: libbpf reuses the pin */
	__type(key, struct cg_key);
	__type(value, struct hist_value);
} oncpu_stats SEC(".maps");

/* @cgrp's entry in oncpu_stats (NULL: none yet); its key in *key. */
static __always_inline struct hist_value *oncpu_lookup(struct cgroup *cgrp, struct cg_key *key)
{
	key->hierarchy_id = BPF_CORE_READ(cgrp, root, hierarchy_id);
	key->pad = 0;
	key->cgroup_id = BPF_CORE_READ(cgrp, kn, id);
	return bpf_map_lookup_elem(&oncpu_stats, key);
}

#endif /* __ONCPU_STATS_BPF_H */
