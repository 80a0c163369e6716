// SPDX-License-Identifier: GPL-2.0
/*
 * pinloop: the C baseline of `bpffs-sync bench sync` -- the syscalls a first mirror pass cannot
 * avoid, with no daemon around them: for every cgroup below CGROUP_ROOT (depth first, relative to
 * directory fds), mkdirat() its directory under MIRROR_DIR, BPF_LINK_CREATE a SELF_ONLY cgroup
 * iterator of the stat's reader for it, BPF_OBJ_PIN the link there (BPF_F_PATH_FD) and fchmodat()
 * the pin to 0444. The reader comes from the same object the daemon loads, with the stats map
 * reused from its pin (so nothing else is loaded or attached).
 *
 *   pinloop OBJ PROG MAP MAP_PIN CGROUP_ROOT MIRROR_DIR
 *
 * Output: "cgroups <n>" and "seconds <s>" (the walk + syscalls, after the load). Exit 1 with one
 * line on stderr when anything fails.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#ifndef BPF_F_PATH_FD
#define BPF_F_PATH_FD (1U << 14)
#endif

struct obj_attr {
	__u64 pathname;
	__u32 bpf_fd;
	__u32 file_flags;
	__s32 path_fd;
};

static int pin_at(int fd, int dir_fd, const char *name)
{
	struct obj_attr attr;

	memset(&attr, 0, sizeof(attr));	/* the kernel wants the padding zeroed too */
	attr.pathname = (__u64)(unsigned long)name;
	attr.bpf_fd = fd;
	attr.file_flags = BPF_F_PATH_FD;
	attr.path_fd = dir_fd;
	return syscall(__NR_bpf, BPF_OBJ_PIN, &attr, sizeof(attr));
}

static int die(const char *what, const char *name)
{
	fprintf(stderr, "pinloop: %s %s: %s\n", what, name, strerror(errno));
	exit(1);
}

static long mirror_one(int prog_fd, const char *prog, int cg_fd, int dir_fd)
{
	union bpf_iter_link_info info = {};
	LIBBPF_OPTS(bpf_link_create_opts, opts);
	int link;

	info.cgroup.cgroup_fd = cg_fd;
	info.cgroup.order = BPF_CGROUP_ITER_SELF_ONLY;
	opts.iter_info = &info;
	opts.iter_info_len = sizeof(info);
	link = bpf_link_create(prog_fd, 0, BPF_TRACE_ITER, &opts);
	if (link < 0)
		die("link_create", prog);
	if (pin_at(link, dir_fd, prog))
		die("pin", prog);
	close(link);
	if (fchmodat(dir_fd, prog, 0444, 0))
		die("chmod", prog);
	return 1;
}

/* Depth first: the cgroup open at cg_fd, mirrored in the directory open at dir_fd, then below. */
static long walk(int prog_fd, const char *prog, int cg_fd, int dir_fd)
{
	long n = mirror_one(prog_fd, prog, cg_fd, dir_fd);
	int scan = dup(cg_fd);
	DIR *d = fdopendir(scan);
	struct dirent *e;

	if (!d)
		die("fdopendir", "cgroup");
	while ((e = readdir(d))) {
		int child_cg, child_dir;

		if (e->d_type != DT_DIR || !strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		child_cg = openat(cg_fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (child_cg < 0)
			die("open cgroup", e->d_name);
		if (mkdirat(dir_fd, e->d_name, 0755) && errno != EEXIST)
			die("mkdir", e->d_name);
		child_dir = openat(dir_fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (child_dir < 0)
			die("open mirror dir", e->d_name);
		n += walk(prog_fd, prog, child_cg, child_dir);
		close(child_dir);
		close(child_cg);
	}
	closedir(d);
	return n;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_program *p, *reader;
	struct bpf_map *map;
	struct timespec t0, t1;
	int cg_fd, dir_fd;
	long n;

	if (argc != 7) {
		fprintf(stderr, "usage: pinloop OBJ PROG MAP MAP_PIN CGROUP_ROOT MIRROR_DIR\n");
		return 2;
	}
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj)
		die("open", argv[1]);
	reader = bpf_object__find_program_by_name(obj, argv[2]);
	map = bpf_object__find_map_by_name(obj, argv[3]);
	if (!reader || !map)
		die("find", argv[2]);
	bpf_object__for_each_program(p, obj)
		bpf_program__set_autoload(p, p == reader);
	if (bpf_map__set_pin_path(map, argv[4]) || bpf_object__load(obj))
		die("load", argv[1]);
	cg_fd = open(argv[5], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	dir_fd = open(argv[6], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cg_fd < 0 || dir_fd < 0)
		die("open", "roots");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	n = walk(bpf_program__fd(reader), argv[2], cg_fd, dir_fd);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("cgroups %ld\nseconds %.6f\n", n,
	       (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
	bpf_object__close(obj);
	return 0;
}
