/* SPDX-License-Identifier: GPL-2.0 */
#ifndef __MEMCG_HISTO_H
#define __MEMCG_HISTO_H

#include "stat_common.h"

/*
 * The memcg_stats map: struct cg_key -> struct hist_value, where total_ns is the time tasks of
 * the memory cgroup (and of its descendants) spent in memcg direct reclaim, count the number of
 * reclaim episodes, slots the log2 histogram of episode lengths in usecs. Keys are the task's
 * cgroup in the hierarchy the memory controller is bound to (v1 or v2).
 */

/* x86-64: the only target the Makefile builds for (-D__TARGET_ARCH_x86). */
#define MEMCG_PAGE_SIZE 4096ULL

#endif /* __MEMCG_HISTO_H */
