/* SPDX-License-Identifier: GPL-2.0 */
#ifndef __HIST_ONCPU_H
#define __HIST_ONCPU_H

#include "stat_common.h"

/* Value of the oncpu_stats map, keyed by v2 cgroup id (kernfs id, == inode number in cgroupfs). */
struct oncpu_stat {
	__u64 total_ns;		/* on-CPU time of tasks in the cgroup and its descendants */
	__u64 slices;		/* number of on-CPU slices ended by a context switch */
	__u64 slots[MAX_SLOTS];	/* log2 histogram of slice lengths, in usecs */
};

#endif /* __HIST_ONCPU_H */
