# bpffs-sync. The two set-up commands of the README:
#   make demo   install everything, start the mirror (bpffs-sync run) and run the demo
#   make test   install everything and run the whole test suite (lint, types, pytest)
#   make install  install bpffs-sync (venv in $(PREFIX)/lib/bpffs-sync, BPF objects in the package) + systemd units
# Long steps run through scripts/progress.sh: elapsed time and an estimate on screen, full logs in build/logs/.
SHELL := /bin/bash
BPF_OUT := build/bpf
BPF_SRCS := $(wildcard bpf/*.bpf.c)
BPF_OBJS := $(patsubst bpf/%.bpf.c,$(BPF_OUT)/%.bpf.o,$(BPF_SRCS))
# The same sources built as SEC("cgroup/stat") for the patched kernel (BPF_PROG_TYPE_CGROUP_STAT).
BPF_STAT_OBJS := $(patsubst bpf/%.bpf.c,$(BPF_OUT)/%.stat.bpf.o,$(BPF_SRCS))
BPF_HDRS := $(wildcard bpf/*.h)
CLANG ?= clang
BPF_CFLAGS := -g -O2 -Wall -Werror -target bpf -D__TARGET_ARCH_x86 -I$(BPF_OUT) -Ibpf
VENV := .venv/bin
VMLINUX_BTF ?= /sys/kernel/btf/vmlinux
PREFIX ?= /usr/local
UNITDIR ?= /etc/systemd/system
PROGRESS := scripts/progress.sh

.PHONY: FORCE all deps bpf bpf-objects install uninstall image demo test lint lint-run pytest-run lock test-latest test-lowest unit clean-build start-daemon stop-daemon bench kernel kernel-bisect kernel-test kernel-a1-test kernel-a2-alone-test kernel-debug-test kernel-bench kernel-smoke

all: bpf

deps:
	@scripts/install-deps.sh

# sysfs mtimes are not content mtimes: regenerate always, replace only when the BTF changed.
$(BPF_OUT)/vmlinux.h: FORCE
	@mkdir -p $(BPF_OUT)
	@bpftool btf dump file $(VMLINUX_BTF) format c > $@.tmp
	@if cmp -s $@.tmp $@; then rm $@.tmp; else mv $@.tmp $@; echo "  GEN     $@"; fi

FORCE:

$(BPF_OUT)/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS) $(BPF_OUT)/vmlinux.h
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BPF_OUT)/%.stat.bpf.o: bpf/%.bpf.c $(BPF_HDRS) $(BPF_OUT)/vmlinux.h
	$(CLANG) $(BPF_CFLAGS) -DBPFFS_SYNC_CGROUP_STAT -c $< -o $@

bpf: deps $(BPF_OBJS) $(BPF_STAT_OBJS)

# The objects alone, no venv (setup.py's build hook: `make bpf-objects BPF_OUT=<dir>` ships them in the wheel).
bpf-objects: $(BPF_OBJS) $(BPF_STAT_OBJS)

# A system install: its own venv (Debian's python is externally managed), the CLI on PATH, the units.
# The wheel is built here, with the BPF objects compiled into it (setup.py); nothing is built on the node.
install: deps
	python3 -m venv $(DESTDIR)$(PREFIX)/lib/bpffs-sync
	$(DESTDIR)$(PREFIX)/lib/bpffs-sync/bin/pip install -q --disable-pip-version-check --require-hashes \
		-r requirements/runtime.lock
	$(DESTDIR)$(PREFIX)/lib/bpffs-sync/bin/pip install -q --disable-pip-version-check --no-deps .
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(UNITDIR)
	ln -sf $(PREFIX)/lib/bpffs-sync/bin/bpffs-sync $(DESTDIR)$(PREFIX)/bin/bpffs-sync
	install -m 0644 packaging/systemd/bpffs-sync.service packaging/systemd/bpffs-sync-export.service \
		$(DESTDIR)$(UNITDIR)/
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed: $(PREFIX)/bin/bpffs-sync ($$($(DESTDIR)$(PREFIX)/bin/bpffs-sync --version));" \
		"start with: systemctl enable --now bpffs-sync bpffs-sync-export"

uninstall:
	rm -f $(DESTDIR)$(UNITDIR)/bpffs-sync.service $(DESTDIR)$(UNITDIR)/bpffs-sync-export.service
	rm -rf $(DESTDIR)$(PREFIX)/lib/bpffs-sync $(DESTDIR)$(PREFIX)/bin/bpffs-sync

# The node agent's image (packaging/Containerfile) with podman, from a bookworm base made by mmdebstrap, no
# container registry; prints the sizes (IMAGE_ARGS=--json). Needs podman and mmdebstrap; not part of `make test`.
image:
	packaging/build-image.sh $(IMAGE_ARGS)

start-daemon: bpf
	@scripts/start-daemon.sh

stop-daemon:
	@scripts/stop-daemon.sh

demo: start-daemon
	$(VENV)/bpffs-sync demo

lint: deps
	@$(MAKE) --no-print-directory lint-run

# lint/pytest without the install step (test-latest runs them in its own venv: VENV=build/venv-latest/bin).
lint-run:
	$(VENV)/ruff check bpffs_sync v1_controllers tests bench kernel-approach1/tests kernel-approach1/bench \
		kernel-approach2/tests kernel-approach2/bench
	$(VENV)/mypy
	MYPYPATH=tests $(VENV)/mypy kernel-approach1/tests kernel-approach1/bench
	MYPYPATH=tests $(VENV)/mypy kernel-approach2/tests kernel-approach2/bench

test: bpf lint
	@$(MAKE) --no-print-directory pytest-run
	$(MAKE) --no-print-directory kernel-test

pytest-run:
	$(VENV)/pytest -q

# The lock: requirements/dev.lock (everything, hashes) and its runtime subset requirements/runtime.lock, one
# resolution (scripts/lock.sh); `make lock` moves every pin to the newest release, LOCK_ARGS=--keep only adds.
lock: deps
	scripts/lock.sh $(LOCK_ARGS)

# Lint, types and the host suite on the newest release of every dependency (throwaway venv; run before a stop).
test-latest: bpf
	scripts/test-latest.sh

# The same on the lowest releases pyproject.toml's bounds allow (so the bounds are true).
test-lowest: bpf
	scripts/test-latest.sh --lowest

unit: deps
	$(VENV)/pytest -q -m unit

bench: bpf
	$(VENV)/bpffs-sync bench

clean-build:
	rm -rf build

# The kernel series: build (from scratch ~21 min here, then incremental with ccache) ...
kernel: deps
	@scripts/install-deps.sh --kernel
	@$(PROGRESS) kernel-fetch kernel-approach1/scripts/fetch-source.sh
	@$(PROGRESS) kernel-build kernel-approach1/scripts/build.sh plain

# ... and the test of `make test`: ONE image carrying both series (Approach 1 as committed at HEAD, Approach 2 on
# top: kernel-approach2/scripts/build.sh), booted twice side by side under virtme-ng (single-threaded TCG, one host core each), one in-guest suite per boot.
kernel-test: deps
	@scripts/install-deps.sh --kernel
	@$(PROGRESS) kernel-fetch kernel-approach1/scripts/fetch-source.sh
	@BPFFS_SYNC_A1_REV=HEAD $(PROGRESS) kernel-build-both kernel-approach2/scripts/build.sh
	@BPFFS_SYNC_A1_REV=HEAD $(PROGRESS) kernel-boot-test kernel-approach2/scripts/test.sh --a1

# Both suites on the debug config (lockdep, KASAN, kmemleak, DEBUG_ATOMIC_SLEEP), one image with both series,
# two boots side by side (one per suite): a ~31 min build from scratch here, then about an hour of tests under TCG
# (the fixtures load hist_oncpu once per session; each CLI test's commands load it again, ~140 s a load);
# BPFFS_SYNC_DEBUG_A1=/_A2= name the files to run (debug-test.sh); not part of `make test`.
kernel-debug-test: deps
	@scripts/install-deps.sh --kernel
	@$(PROGRESS) kernel-fetch kernel-approach1/scripts/fetch-source.sh
	@BPFFS_SYNC_A1_REV=HEAD $(PROGRESS) kernel-debug-build kernel-approach2/scripts/build.sh debug
	@BPFFS_SYNC_A1_REV=HEAD $(PROGRESS) kernel-debug-boot-test kernel-approach2/scripts/debug-test.sh

# Every patch of the series builds on its own, -Werror (after `make kernel`; ~4 min).
kernel-bisect: kernel
	@$(PROGRESS) kernel-bisect kernel-approach1/scripts/bisect-build.sh

# Kernel benchmarks in the guest, both approaches in one boot (link create = cgroup_mutex hold, mkdir/rmdir under
# 0/1/4 links, a mkdir's stall during populate, reads, slab per file), vs same-run baselines.
kernel-bench: deps
	@scripts/install-deps.sh --kernel
	@BPFFS_SYNC_A1_REV=HEAD $(PROGRESS) kernel-build-both kernel-approach2/scripts/build.sh
	BPFFS_SYNC_A1_REV=HEAD kernel-approach2/scripts/test.sh --bench

# The upstream BPF selftests on their own config (tools/testing/selftests/bpf/config + config.x86_64 + modules),
# pristine 7.3 vs the series: two more trees (selftests-pristine, selftests-patched seeded from it), the full
# test_progs of each (clang-19, exclusions listed in the table), one TCG boot each, and the table
# kernel-approach1/selftests/upstream-table.md. Hours from scratch, so not part of `make test`: run it whenever
# the series changes (times: kernel-approach1/README.md, "Upstream selftests").
.PHONY: kernel-selftests
kernel-selftests: deps
	@scripts/install-deps.sh --kernel
	@$(PROGRESS) kernel-fetch kernel-approach1/scripts/fetch-source.sh
	@$(PROGRESS) kernel-selftests kernel-approach1/scripts/upstream-selftests.sh all

# Approach 1 alone (its own tree, build-plain): the series' developer loop.
kernel-a1-test: deps
	@scripts/install-deps.sh --kernel
	@$(PROGRESS) kernel-build kernel-approach1/scripts/build.sh plain
	@$(PROGRESS) kernel-a1-boot-test kernel-approach1/scripts/test.sh

# Approach 2 as posted, alone on pristine 7.3 (tree build-a2-alone, seeded from build-a2): its guest
# suite and its selftests. A second image (a build of most of the kernel: the UAPI header differs
# from the comparison image's), so not part of `make test`.
kernel-a2-alone-test: deps
	@scripts/install-deps.sh --kernel
	@$(PROGRESS) kernel-fetch kernel-approach1/scripts/fetch-source.sh
	@$(PROGRESS) kernel-a2-alone-build kernel-approach2/scripts/build.sh alone
	@$(PROGRESS) kernel-a2-alone-boot-test kernel-approach2/scripts/test.sh --alone

# The user-space mirror's kernel tests, inside a 7.3 guest (virtme-ng under TCG, ~4 min).
kernel-smoke: kernel bpf
	kernel-approach1/scripts/run-guest.sh --mem 4G .venv/bin/pytest -q -p no:cacheprovider \
		tests/test_hist_oncpu.py tests/test_mirror.py
