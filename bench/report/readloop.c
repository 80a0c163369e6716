// SPDX-License-Identifier: GPL-2.0
/*
 * readloop: the C loop of `bpffs-sync report`. One mechanism per run, N timed operations.
 *
 *   readloop file      N PATH KEY           open + read(32 KiB) + close + parse the number after KEY
 *                                           (KEY "": the number the file starts with)
 *   readloop text      N PATH               open + read(32 KiB) + close: the file's text, not parsed
 *   readloop map       N MAP_PIN HIER CGID  bpf_map_lookup_elem of struct cg_key -> raw hist_value
 *   readloop maptext   N MAP_PIN HIER CGID  the same lookup, then the full text formatted here (snprintf,
 *                                           hist_oncpu's reader's layout: the bytes of the mirror's file)
 *   readloop progrun   N PROG_PIN HIER CGID bpf_prog_test_run_opts of stat_by_id: the raw struct out
 *   readloop progtext  N PROG_PIN HIER CGID bpf_prog_test_run_opts of stat_text: the full text out
 *   readloop iter      N PROG_PIN CGDIR [KEY] cgroup iterator made per read (link + iter fd), read, close
 *                                           (+ parse the number after KEY when given)
 *   readloop netlink   N CGDIR              taskstats CGROUPSTATS_CMD_GET (genetlink), cgroup-v1 only
 *   readloop xattr_get N CGDIR NAME         getxattr of a cgroupfs user.* xattr
 *   readloop xattr_set N CGDIR NAME         setxattr of a cgroupfs user.* xattr
 *   readloop xattr_set8 N CGDIR NAME        setxattr of the u64 counter's 8 bytes (what mapupdate writes)
 *   readloop mapupdate N MAP_PIN HIER CGID  bpf_map_update_elem of a pinned knob map
 *   readloop filewrite8 N PATH              write(2) of the u64 counter's 8 bytes to PATH, opened O_WRONLY
 *                                           once (an Approach 1 knob file of a BPF_F_CGROUP_STAT_WRITE
 *                                           link: each write runs its program; the position is ignored,
 *                                           and pwrite fails, ESPIPE: the file is a stream)
 *   readloop churn     0 DIR                mkdir/rmdir DIR/churn<i> until killed (the load, not a measure)
 *   readloop mkdirlat  N DIR STOPFILE       time mkdir DIR/probe (rmdir untimed) until STOPFILE exists or
 *                                           N samples: the mkdir latency probe of the populate measure
 *   readloop mkdirts   N DIR STOPFILE       the same, each line "<start ns, CLOCK_MONOTONIC> <ns>": which
 *                                           mkdirs overlapped a given window (the guest's stall measure)
 *
 * Output (stdout): "value <v>" (what the last operation read: the stat, so the runner can check
 * every mechanism saw the same cgroup; for text, maptext, progtext and iter without KEY, total_ns
 * parsed from the text after the loop, untimed), then N lines of nanoseconds, one per operation.
 * Exit 1 with one line on stderr when an operation fails.
 *
 * Environment:
 *   READLOOP_OUT=FILE   write what the last operation produced to FILE: the text (text, maptext,
 *                       progtext, iter without KEY) or "<value>\n" (every other mode): the report's
 *                       equal-work check compares these bytes across routes
 *   READLOOP_PHASES=1   the per-syscall breakdown: each line is "<total> <open> <read> <close> <bpf>",
 *                       ns in each kind of syscall of that operation (clock_gettime around each call;
 *                       bpf: every bpf(2) call, e.g. link create + iterator create); the rest of the
 *                       total is user space (parse, format) and the clock reads themselves
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <linux/bpf.h>
#include <linux/cgroupstats.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/taskstats.h>
#include <bpf/bpf.h>

#define MAX_SLOTS 27
#define WARMUP 50
#define BUF_SIZE 32768
#define TEXT_MAX 4096	/* stat_by_id.bpf.c's */
#define HIST_BAR_WIDTH 40

struct cg_key {
	uint32_t hierarchy_id;
	uint32_t pad;
	uint64_t cgroup_id;
};

struct hist_value {
	uint64_t total_ns;
	uint64_t count;
	uint64_t slots[MAX_SLOTS];
};

struct stat_args {
	struct cg_key key;
	uint32_t found;
	uint32_t pad;
	struct hist_value value;
};

struct text_args {
	struct cg_key key;
	uint32_t found;
	uint32_t len;
	char text[TEXT_MAX];
};

static char buf[BUF_SIZE];

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* The per-syscall breakdown (READLOOP_PHASES): ns spent in each kind of call of one operation. */
enum { PH_OPEN, PH_READ, PH_CLOSE, PH_BPF, N_PH };
static int phases;
static uint64_t ph[N_PH];

#define PH(i, expr)							\
	({								\
		uint64_t __t = phases ? now_ns() : 0;			\
		__typeof__(expr) __r = (expr);				\
		if (phases)						\
			ph[i] += now_ns() - __t;			\
		__r;							\
	})

static void die(const char *what, int err)
{
	fprintf(stderr, "readloop: %s: %s\n", what, strerror(err));
	exit(1);
}

static uint64_t parse_key(const char *text, const char *key)
{
	const char *p = strstr(text, key);

	if (!p)
		return 0;
	p += strlen(key);
	while (*p == ' ' || *p == ':' || *p == '\t')
		p++;
	return strtoull(p, NULL, 10);
}

/* One read() of the whole text; a text that fills the buffer may have been cut, so it fails (E2BIG). */
static ssize_t read_fd_all(int fd)
{
	ssize_t n = PH(PH_READ, read(fd, buf, sizeof(buf) - 1));

	if (n == (ssize_t)sizeof(buf) - 1) {
		errno = E2BIG;
		return -1;
	}
	if (n >= 0)
		buf[n] = 0;
	return n;
}

static void close_or_die(int fd, const char *what)
{
	if (PH(PH_CLOSE, close(fd)))
		die(what, errno);
}

/* --- one operation per mechanism: returns the value read ------------------------------------ */

struct ctx {
	const char *path, *key, *name;
	int fd, cg_fd, nl_fd;
	uint16_t family;
	struct cg_key cgkey;
	uint64_t counter;
	const char *out;	/* what the last operation produced, for a text mode */
	size_t out_len;
};

static uint64_t op_file(struct ctx *c)
{
	int fd = PH(PH_OPEN, open(c->path, O_RDONLY | O_CLOEXEC));

	if (fd < 0)
		die(c->path, errno);
	if (read_fd_all(fd) < 0)
		die("read", errno);
	close_or_die(fd, "close");
	return parse_key(buf, c->key);
}

/* The full text: open + read + close, nothing parsed (the value is parsed after the loop). */
static uint64_t op_text(struct ctx *c)
{
	int fd = PH(PH_OPEN, open(c->path, O_RDONLY | O_CLOEXEC));
	ssize_t n;

	if (fd < 0)
		die(c->path, errno);
	n = read_fd_all(fd);
	if (n < 0)
		die("read", errno);
	close_or_die(fd, "close");
	c->out = buf, c->out_len = n;
	return 0;
}

static uint64_t op_map(struct ctx *c)
{
	struct hist_value v;

	if (PH(PH_BPF, bpf_map_lookup_elem(c->fd, &c->cgkey, &v)))
		return errno == ENOENT ? 0 : (die("bpf_map_lookup_elem", errno), 0);
	return v.total_ns;
}

/* hist_oncpu's reader's text (stat_common.bpf.h print_log2_hist), formatted here into buf. */
static size_t format_text(char *out, size_t size, uint64_t cgid, const struct hist_value *v)
{
	static const char stars[] = "****************************************";
	static const char spaces[] = "                                        ";
	uint64_t max = 0, low, high, val, bar;
	size_t n;
	int i, idx_max = -1;

	n = snprintf(out, size, "cgroup_id: %llu\ntotal_ns: %llu\nslices: %llu\n", (unsigned long long)cgid,
		     (unsigned long long)(v ? v->total_ns : 0), (unsigned long long)(v ? v->count : 0));
	if (!v)
		return n;
	for (i = 0; i < MAX_SLOTS; i++) {
		if (v->slots[i])
			idx_max = i;
		if (v->slots[i] > max)
			max = v->slots[i];
	}
	if (idx_max < 0 || n >= size)
		return n < size ? n : size - 1;
	n += snprintf(out + n, size - n, "     usecs               : count    distribution\n");
	for (i = 0; i <= idx_max && n < size; i++) {
		val = v->slots[i];
		low = (1ULL << (i + 1)) >> 1;
		high = (1ULL << (i + 1)) - 1;
		if (low == high)
			low -= 1;
		bar = val * HIST_BAR_WIDTH / max;
		if (bar > HIST_BAR_WIDTH)
			bar = HIST_BAR_WIDTH;
		n += snprintf(out + n, size - n, "%10llu -> %-10llu : %-8llu |%s%s|\n", (unsigned long long)low,
			      (unsigned long long)high, (unsigned long long)val, &stars[HIST_BAR_WIDTH - bar],
			      &spaces[bar]);
	}
	return n < size ? n : size - 1;
}

static uint64_t op_maptext(struct ctx *c)
{
	struct hist_value v;
	int absent = 0;

	if (PH(PH_BPF, bpf_map_lookup_elem(c->fd, &c->cgkey, &v))) {
		if (errno != ENOENT)
			die("bpf_map_lookup_elem", errno);
		absent = 1;
	}
	c->out = buf, c->out_len = format_text(buf, sizeof(buf), c->cgkey.cgroup_id, absent ? NULL : &v);
	return 0;
}

static uint64_t op_progrun(struct ctx *c)
{
	struct stat_args args = { .key = c->cgkey };
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &args, .ctx_size_in = sizeof(args));

	if (PH(PH_BPF, bpf_prog_test_run_opts(c->fd, &opts)))
		die("bpf_prog_test_run_opts", errno);
	return args.found ? args.value.total_ns : 0;
}

static struct text_args text_args;

static uint64_t op_progtext(struct ctx *c)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts, .ctx_in = &text_args, .ctx_size_in = sizeof(text_args));

	text_args.key = c->cgkey;
	if (PH(PH_BPF, bpf_prog_test_run_opts(c->fd, &opts)))
		die("bpf_prog_test_run_opts", errno);
	if (text_args.len >= TEXT_MAX)
		die("stat_text: len", E2BIG);
	c->out = text_args.text, c->out_len = text_args.len;
	return 0;
}

static uint64_t op_iter(struct ctx *c)
{
	union bpf_iter_link_info info = { .cgroup = { .order = BPF_CGROUP_ITER_SELF_ONLY, .cgroup_fd = c->cg_fd } };
	LIBBPF_OPTS(bpf_link_create_opts, opts, .iter_info = &info, .iter_info_len = sizeof(info));
	int link, it;
	ssize_t n;

	link = PH(PH_BPF, bpf_link_create(c->fd, 0, BPF_TRACE_ITER, &opts));
	if (link < 0)
		die("bpf_link_create", errno);
	it = PH(PH_BPF, bpf_iter_create(link));
	if (it < 0)
		die("bpf_iter_create", errno);
	n = read_fd_all(it);
	if (n < 0)
		die("read iter", errno);
	close_or_die(it, "close iter");
	close_or_die(link, "close link");
	if (!c->key) {
		c->out = buf, c->out_len = n;
		return 0;
	}
	return parse_key(buf, c->key);
}

static uint16_t genl_family(int nl, const char *name)
{
	struct {
		struct nlmsghdr n;
		struct genlmsghdr g;
		char attrs[64];
	} req = { 0 };
	struct nlattr *na = (struct nlattr *)req.attrs;
	struct nlmsghdr *rep = (struct nlmsghdr *)buf;
	ssize_t len;

	req.n.nlmsg_type = GENL_ID_CTRL;
	req.n.nlmsg_flags = NLM_F_REQUEST;
	req.g.cmd = CTRL_CMD_GETFAMILY;
	req.g.version = 1;
	na->nla_type = CTRL_ATTR_FAMILY_NAME;
	na->nla_len = NLA_HDRLEN + strlen(name) + 1;
	strcpy((char *)na + NLA_HDRLEN, name);
	req.n.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN) + NLA_ALIGN(na->nla_len);
	if (send(nl, &req, req.n.nlmsg_len, 0) < 0)
		die("send CTRL_CMD_GETFAMILY", errno);
	len = recv(nl, buf, sizeof(buf), 0);
	if (len < 0)
		die("recv CTRL_CMD_GETFAMILY", errno);
	if (len < (ssize_t)NLMSG_LENGTH(GENL_HDRLEN) || rep->nlmsg_type == NLMSG_ERROR || rep->nlmsg_len > len)
		die("genetlink family TASKSTATS", EINVAL);
	len = rep->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN);
	na = (struct nlattr *)((char *)NLMSG_DATA(rep) + GENL_HDRLEN);
	/* attributes within the message only; a zero-length one would loop forever */
	while (len >= NLA_HDRLEN && na->nla_len >= NLA_HDRLEN && na->nla_len <= len) {
		if (na->nla_type == CTRL_ATTR_FAMILY_ID && na->nla_len >= NLA_HDRLEN + sizeof(uint16_t))
			return *(uint16_t *)((char *)na + NLA_HDRLEN);
		len -= NLA_ALIGN(na->nla_len);
		na = (struct nlattr *)((char *)na + NLA_ALIGN(na->nla_len));
	}
	die("genetlink family id", ENOENT);
	return 0;
}

static uint64_t op_netlink(struct ctx *c)
{
	struct {
		struct nlmsghdr n;
		struct genlmsghdr g;
		struct nlattr a;
		uint32_t fd;
	} req = { 0 };
	struct nlmsghdr *rep = (struct nlmsghdr *)buf;
	struct nlattr *na;
	struct cgroupstats st;
	ssize_t len;

	req.n.nlmsg_type = c->family;
	req.n.nlmsg_flags = NLM_F_REQUEST;
	req.n.nlmsg_len = sizeof(req);
	req.g.cmd = CGROUPSTATS_CMD_GET;
	req.g.version = 1;
	req.a.nla_type = CGROUPSTATS_CMD_ATTR_FD;
	req.a.nla_len = NLA_HDRLEN + sizeof(uint32_t);
	req.fd = c->cg_fd;
	if (send(c->nl_fd, &req, sizeof(req), 0) < 0)
		die("send CGROUPSTATS_CMD_GET", errno);
	len = recv(c->nl_fd, buf, sizeof(buf), 0);
	if (len < 0)
		die("recv", errno);
	if (len < (ssize_t)NLMSG_HDRLEN ||
	    (rep->nlmsg_type == NLMSG_ERROR && len < (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr))))
		die("CGROUPSTATS_CMD_GET: short reply", EINVAL);
	if (rep->nlmsg_type == NLMSG_ERROR)
		die("CGROUPSTATS_CMD_GET", -((struct nlmsgerr *)NLMSG_DATA(rep))->error);
	na = (struct nlattr *)((char *)NLMSG_DATA(rep) + GENL_HDRLEN);
	/* the reply's one attribute, CGROUPSTATS_TYPE_CGROUP_STATS, whole within what recv() returned */
	if (len < (ssize_t)(NLMSG_LENGTH(GENL_HDRLEN) + NLA_HDRLEN + sizeof(st)) ||
	    na->nla_type != CGROUPSTATS_TYPE_CGROUP_STATS || na->nla_len < NLA_HDRLEN + sizeof(st))
		die("CGROUPSTATS_CMD_GET: no cgroupstats in the reply", EINVAL);
	memcpy(&st, (char *)na + NLA_HDRLEN, sizeof(st));
	return st.nr_sleeping + st.nr_running + st.nr_stopped + st.nr_uninterruptible + st.nr_io_wait;
}

static uint64_t op_xattr_get(struct ctx *c)
{
	ssize_t n = getxattr(c->path, c->name, buf, sizeof(buf) - 1);

	if (n < 0)
		die("getxattr", errno);
	buf[n] = 0;
	return strtoull(buf, NULL, 10);
}

static uint64_t op_xattr_set(struct ctx *c)
{
	int n = snprintf(buf, sizeof(buf), "%llu", (unsigned long long)++c->counter);

	if (setxattr(c->path, c->name, buf, n, 0))
		die("setxattr", errno);
	return c->counter;
}

static uint64_t op_xattr_set8(struct ctx *c)
{
	uint64_t v = ++c->counter;

	if (setxattr(c->path, c->name, &v, sizeof(v), 0))
		die("setxattr", errno);
	return v;
}

static uint64_t op_mapupdate(struct ctx *c)
{
	uint64_t v = ++c->counter;

	if (bpf_map_update_elem(c->fd, &c->cgkey, &v, BPF_ANY))
		die("bpf_map_update_elem", errno);
	return v;
}

static uint64_t op_filewrite8(struct ctx *c)
{
	uint64_t v = ++c->counter;
	ssize_t n = write(c->fd, &v, sizeof(v));

	if (n < 0)
		die("write", errno);
	if (n != sizeof(v))
		die("write", EIO);
	return v;
}

static int churn(const char *dir)
{
	char path[4096];
	unsigned long i;

	for (i = 0;; i++) {
		snprintf(path, sizeof(path), "%s/churn%lu", dir, i % 8);
		if (mkdir(path, 0755) && errno != EEXIST)
			die("mkdir", errno);
		if (rmdir(path) && errno != ENOENT)
			die("rmdir", errno);
	}
	return 0;
}

static int mkdirlat(long max, const char *dir, const char *stop, int with_start)
{
	uint64_t *samples = calloc(max > 0 ? max : 1, sizeof(*samples)), t0;
	uint64_t *starts = calloc(max > 0 ? max : 1, sizeof(*starts));
	char path[4096];
	long i, n = 0;

	if (!samples || !starts)
		die("calloc", ENOMEM);
	snprintf(path, sizeof(path), "%s/probe", dir);
	for (i = 0; i < max && access(stop, F_OK); i++) {
		t0 = now_ns();
		if (mkdir(path, 0755))
			die("mkdir", errno);
		starts[n] = t0;
		samples[n++] = now_ns() - t0;
		if (rmdir(path))
			die("rmdir", errno);
	}
	printf("value %ld\n", n);
	for (i = 0; i < n; i++) {
		if (with_start)
			printf("%llu ", (unsigned long long)starts[i]);
		printf("%llu\n", (unsigned long long)samples[i]);
	}
	if (fflush(stdout) || ferror(stdout))
		die("stdout", errno ? errno : EIO);
	return 0;
}

/* READLOOP_OUT: what the last operation produced (a text mode's bytes, else "<value>\n"). */
static void write_out(const char *path, const struct ctx *c, uint64_t value)
{
	FILE *f = fopen(path, "wb");

	if (!f)
		die(path, errno);
	if (c->out ? fwrite(c->out, 1, c->out_len, f) != c->out_len
		   : fprintf(f, "%llu\n", (unsigned long long)value) < 0)
		die(path, ferror(f) && errno ? errno : EIO);
	if (fclose(f))
		die(path, errno);
}

static int pinned(const char *path)
{
	int fd = bpf_obj_get(path);

	if (fd < 0)
		die(path, errno);
	return fd;
}

static int open_dir(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		die(path, errno);
	return fd;
}

int main(int argc, char **argv)
{
	uint64_t (*op)(struct ctx *) = NULL;
	struct ctx c = { .fd = -1, .cg_fd = -1, .nl_fd = -1 };
	uint64_t *samples, value = 0, t0;
	const char *mode;
	long n, i;

	if (argc < 4) {
		fprintf(stderr, "usage: readloop MODE N ARGS... (see the top of readloop.c)\n");
		return 2;
	}
	mode = argv[1];
	n = atol(argv[2]);
	if (!strcmp(mode, "churn"))
		return churn(argv[3]);
	if (n < 1 || n > 100000000) {	/* the samples' calloc below: no overflow, no empty loop */
		fprintf(stderr, "readloop: N must be 1..100000000: %s\n", argv[2]);
		return 2;
	}
	if ((!strcmp(mode, "mkdirlat") || !strcmp(mode, "mkdirts")) && argc == 5)
		return mkdirlat(n, argv[3], argv[4], !strcmp(mode, "mkdirts"));
	if (!strcmp(mode, "file") && argc == 5) {
		c.path = argv[3], c.key = argv[4], op = op_file;
	} else if (!strcmp(mode, "text") && argc == 4) {
		c.path = argv[3], op = op_text;
	} else if ((!strcmp(mode, "map") || !strcmp(mode, "maptext") || !strcmp(mode, "progrun") ||
		    !strcmp(mode, "progtext") || !strcmp(mode, "mapupdate")) && argc == 6) {
		c.fd = pinned(argv[3]);
		c.cgkey.hierarchy_id = strtoul(argv[4], NULL, 10);
		c.cgkey.cgroup_id = strtoull(argv[5], NULL, 10);
		op = !strcmp(mode, "map") ? op_map : !strcmp(mode, "maptext") ? op_maptext :
		     !strcmp(mode, "progrun") ? op_progrun : !strcmp(mode, "progtext") ? op_progtext : op_mapupdate;
	} else if (!strcmp(mode, "iter") && (argc == 5 || argc == 6)) {
		c.fd = pinned(argv[3]), c.cg_fd = open_dir(argv[4]), c.key = argc == 6 ? argv[5] : NULL, op = op_iter;
	} else if (!strcmp(mode, "netlink") && argc == 4) {
		struct sockaddr_nl sa = { .nl_family = AF_NETLINK };

		c.cg_fd = open_dir(argv[3]);
		c.nl_fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
		if (c.nl_fd < 0 || bind(c.nl_fd, (struct sockaddr *)&sa, sizeof(sa)))
			die("netlink socket", errno);
		c.family = genl_family(c.nl_fd, TASKSTATS_GENL_NAME);
		op = op_netlink;
	} else if ((!strcmp(mode, "xattr_get") || !strcmp(mode, "xattr_set") || !strcmp(mode, "xattr_set8")) &&
		   argc == 5) {
		c.path = argv[3], c.name = argv[4];
		op = !strcmp(mode, "xattr_get") ? op_xattr_get :
		     !strcmp(mode, "xattr_set") ? op_xattr_set : op_xattr_set8;
	} else if (!strcmp(mode, "filewrite8") && argc == 4) {
		c.path = argv[3], op = op_filewrite8;
		c.fd = open(c.path, O_WRONLY | O_CLOEXEC);
		if (c.fd < 0)
			die("open for writing", errno);
	} else {
		fprintf(stderr, "readloop: bad mode or arguments: %s\n", mode);
		return 2;
	}
	phases = getenv("READLOOP_PHASES") && !strcmp(getenv("READLOOP_PHASES"), "1");
	samples = calloc(n * (1 + N_PH), sizeof(*samples));
	if (!samples)
		die("calloc", ENOMEM);
	for (i = 0; i < WARMUP; i++)
		value = op(&c);
	for (i = 0; i < n; i++) {
		memset(ph, 0, sizeof(ph));
		t0 = now_ns();
		value = op(&c);
		samples[i * (1 + N_PH)] = now_ns() - t0;
		memcpy(&samples[i * (1 + N_PH) + 1], ph, sizeof(ph));
	}
	if (c.out) {	/* a text mode: the number is the text's total_ns, read here, untimed */
		char *text = strndup(c.out, c.out_len);

		if (!text)
			die("strndup", ENOMEM);
		value = parse_key(text, "total_ns");
		free(text);
	}
	if (getenv("READLOOP_OUT"))
		write_out(getenv("READLOOP_OUT"), &c, value);
	printf("value %llu\n", (unsigned long long)value);
	for (i = 0; i < n; i++) {
		uint64_t *s = &samples[i * (1 + N_PH)];

		if (phases)
			printf("%llu %llu %llu %llu %llu\n", (unsigned long long)s[0], (unsigned long long)s[1],
			       (unsigned long long)s[2], (unsigned long long)s[3], (unsigned long long)s[4]);
		else
			printf("%llu\n", (unsigned long long)s[0]);
	}
	if (fflush(stdout) || ferror(stdout))
		die("stdout", errno ? errno : EIO);
	return 0;
}
