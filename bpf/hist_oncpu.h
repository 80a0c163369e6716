/* SPDX-License-Identifier: GPL-2.0 */
#ifndef __HIST_ONCPU_H
#define __HIST_ONCPU_H

#include "stat_common.h"

/*
 * The oncpu_stats map: struct cg_key -> struct hist_value, where total_ns is the on-CPU time of
 * the cgroup's tasks and its descendants', count the number of on-CPU slices ended by a context
 * switch, slots the log2 histogram of slice lengths in usecs. Keys: the task's v2 cgroup
 * (hierarchy 0) and, when those controllers are on cgroup v1, its cgroups in the cpu and cpuacct
 * hierarchies.
 */

#endif /* __HIST_ONCPU_H */
