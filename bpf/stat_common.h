/* SPDX-License-Identifier: GPL-2.0 */
/* Layouts shared by the BPF programs and bpffs_sync (which reads them with ctypes). */
#ifndef __STAT_COMMON_H
#define __STAT_COMMON_H

#define MAX_SLOTS 27	/* log2 buckets: the last one holds >= 2^26 units (67 s in usecs) */
#define MAX_CGROUP_DEPTH 16	/* ancestors charged per event: the cgroup itself and up to 15 above */

#endif /* __STAT_COMMON_H */
