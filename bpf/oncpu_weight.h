/* SPDX-License-Identifier: GPL-2.0 */
#ifndef __ONCPU_WEIGHT_H
#define __ONCPU_WEIGHT_H

#define WEIGHT_DEFAULT 100	/* a cgroup whose knob was never written */
#define WEIGHT_MAX 1000
#define WEIGHT_SCALE 100	/* weighted_ns += on-CPU ns * weight / WEIGHT_SCALE */

/*
 * The oncpu_weights map (BPF_MAP_TYPE_CGRP_STORAGE): one value per cgroup, made by the first write
 * of its knob or the first slice charged to it, gone with the cgroup.
 */
struct weight_value {
	__u64 weighted_ns;	/* the cgroup's own tasks' on-CPU time, scaled by the weight when charged */
	__u32 weight1;		/* 0: never written (WEIGHT_DEFAULT applies); else the weight written + 1 */
	__u32 pad;
};

#endif /* __ONCPU_WEIGHT_H */
