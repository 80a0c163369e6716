// SPDX-License-Identifier: GPL-2.0
/*
 * memcg_stat: the memory state lines of a cgroup's memory.stat, computed by the memcg kfuncs
 * (mm/bpf_memcontrol.c) for the file's cgroup, with no text to parse:
 *	anon <bytes>
 *	file <bytes>
 *	...
 *	pgfault <count>
 *	pgmajfault <count>
 * Each line is memory.stat's line of the same name: the same counter through the same
 * memcg_page_state_output() (bytes, or a count for events), after the same flush
 * (bpf_mem_cgroup_flush_stats(), which sleeps: hence the sleepable section). Only the state
 * lines a 7.3 memory.stat always prints, and swapcached where the kernel has swap; not the
 * workingset/pgscan/pgsteal event block.
 *
 * Sections: SEC("cgroup/stat.s") for the patched kernel (BPF_PROG_TYPE_CGROUP_STAT, sleepable),
 * SEC("iter.s/cgroup") for a stock kernel. Either needs the memcg kfuncs (Linux 7.0 and later);
 * without them the file says so in one line. No collector: nothing to load but the reader.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "stat_common.bpf.h"

char LICENSE[] SEC("license") = "GPL";

extern struct mem_cgroup *bpf_get_mem_cgroup(struct cgroup_subsys_state *css) __ksym __weak;
extern void bpf_put_mem_cgroup(struct mem_cgroup *memcg) __ksym __weak;
extern void bpf_mem_cgroup_flush_stats(struct mem_cgroup *memcg) __ksym __weak;
extern unsigned long bpf_mem_cgroup_page_state(struct mem_cgroup *memcg, int idx) __ksym __weak;
extern unsigned long bpf_mem_cgroup_vm_events(struct mem_cgroup *memcg,
					      enum vm_event_item event) __ksym __weak;

#ifndef bpf_ksym_exists	/* libbpf before 1.2 */
#define bpf_ksym_exists(sym) (!!(sym))
#endif

/* Items newer than the vmlinux.h this builds with: matched by name at load time (CO-RE). */
enum node_stat_item___new {
	NR_VMALLOC___new = 0,
};

#define PRINT_STATE(seq, memcg, name, type, item)						\
	do {											\
		if (bpf_core_enum_value_exists(type, item))					\
			BPF_SEQ_PRINTF(seq, name " %lu\n",					\
				       bpf_mem_cgroup_page_state(memcg,				\
								 bpf_core_enum_value(type, item)));	\
	} while (0)

#define PRINT_EVENT(seq, memcg, name, item)							\
	BPF_SEQ_PRINTF(seq, name " %lu\n",							\
		       bpf_mem_cgroup_vm_events(memcg,						\
						bpf_core_enum_value(enum vm_event_item, item)))

SEC(STAT_SEC_SLEEPABLE)
int memcg_stat(struct bpf_iter__cgroup *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct cgroup *cgrp = ctx->cgroup;
	struct mem_cgroup *memcg;
	unsigned long slab;

	if (!cgrp)
		return 0;
	if (!bpf_ksym_exists(bpf_get_mem_cgroup) || !bpf_ksym_exists(bpf_mem_cgroup_flush_stats)) {
		BPF_SEQ_PRINTF(seq, "memcg_stat: this kernel has no memcg kfuncs\n");
		return 0;
	}
	memcg = bpf_get_mem_cgroup(&cgrp->self);
	if (!memcg)
		return 0;	/* no memory controller on this cgroup's hierarchy */

	bpf_mem_cgroup_flush_stats(memcg);
	PRINT_STATE(seq, memcg, "anon", enum node_stat_item, NR_ANON_MAPPED);
	PRINT_STATE(seq, memcg, "file", enum node_stat_item, NR_FILE_PAGES);
	PRINT_STATE(seq, memcg, "kernel", enum memcg_stat_item, MEMCG_KMEM);
	PRINT_STATE(seq, memcg, "kernel_stack", enum node_stat_item, NR_KERNEL_STACK_KB);
	PRINT_STATE(seq, memcg, "pagetables", enum node_stat_item, NR_PAGETABLE);
	PRINT_STATE(seq, memcg, "sec_pagetables", enum node_stat_item, NR_SECONDARY_PAGETABLE);
	PRINT_STATE(seq, memcg, "percpu", enum memcg_stat_item, MEMCG_PERCPU_B);
	PRINT_STATE(seq, memcg, "sock", enum memcg_stat_item, MEMCG_SOCK);
	PRINT_STATE(seq, memcg, "vmalloc", enum node_stat_item___new, NR_VMALLOC___new);
	PRINT_STATE(seq, memcg, "shmem", enum node_stat_item, NR_SHMEM);
	PRINT_STATE(seq, memcg, "file_mapped", enum node_stat_item, NR_FILE_MAPPED);
	PRINT_STATE(seq, memcg, "file_dirty", enum node_stat_item, NR_FILE_DIRTY);
	PRINT_STATE(seq, memcg, "file_writeback", enum node_stat_item, NR_WRITEBACK);
	PRINT_STATE(seq, memcg, "swapcached", enum node_stat_item, NR_SWAPCACHE);
	PRINT_STATE(seq, memcg, "inactive_anon", enum node_stat_item, NR_INACTIVE_ANON);
	PRINT_STATE(seq, memcg, "active_anon", enum node_stat_item, NR_ACTIVE_ANON);
	PRINT_STATE(seq, memcg, "inactive_file", enum node_stat_item, NR_INACTIVE_FILE);
	PRINT_STATE(seq, memcg, "active_file", enum node_stat_item, NR_ACTIVE_FILE);
	PRINT_STATE(seq, memcg, "unevictable", enum node_stat_item, NR_UNEVICTABLE);
	PRINT_STATE(seq, memcg, "slab_reclaimable", enum node_stat_item, NR_SLAB_RECLAIMABLE_B);
	PRINT_STATE(seq, memcg, "slab_unreclaimable", enum node_stat_item, NR_SLAB_UNRECLAIMABLE_B);
	slab = bpf_mem_cgroup_page_state(memcg, bpf_core_enum_value(enum node_stat_item,
								    NR_SLAB_RECLAIMABLE_B)) +
	       bpf_mem_cgroup_page_state(memcg, bpf_core_enum_value(enum node_stat_item,
								    NR_SLAB_UNRECLAIMABLE_B));
	BPF_SEQ_PRINTF(seq, "slab %lu\n", slab);
	PRINT_EVENT(seq, memcg, "pgfault", PGFAULT);
	PRINT_EVENT(seq, memcg, "pgmajfault", PGMAJFAULT);
	bpf_put_mem_cgroup(memcg);
	return 0;
}
