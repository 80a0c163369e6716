# bpffs-sync. The two set-up commands of the README:
#   make demo   install everything, start the mirror (bpffs-sync run) and run the demo
#   make test   install everything and run the whole test suite (lint, types, pytest)
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

.PHONY: FORCE all deps bpf demo test lint unit clean-build start-daemon stop-daemon bench kernel kernel-bisect kernel-test kernel-debug-test kernel-bench kernel-smoke

all: bpf

deps:
	@scripts/install-deps.sh

# sysfs mtimes are not content mtimes: regenerate always, replace only when the BTF changed.
$(BPF_OUT)/vmlinux.h: FORCE
	@mkdir -p $(BPF_OUT)
	@bpftool btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp
	@if cmp -s $@.tmp $@; then rm $@.tmp; else mv $@.tmp $@; echo "  GEN     $@"; fi

FORCE:

$(BPF_OUT)/%.bpf.o: bpf/%.bpf.c $(BPF_HDRS) $(BPF_OUT)/vmlinux.h
	$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BPF_OUT)/%.stat.bpf.o: bpf/%.bpf.c $(BPF_HDRS) $(BPF_OUT)/vmlinux.h
	$(CLANG) $(BPF_CFLAGS) -DBPFFS_SYNC_CGROUP_STAT -c $< -o $@

bpf: deps $(BPF_OBJS) $(BPF_STAT_OBJS)

start-daemon: bpf
	@scripts/start-daemon.sh

stop-daemon:
	@scripts/stop-daemon.sh

demo: start-daemon
	$(VENV)/bpffs-sync demo

lint: deps
	$(VENV)/ruff check bpffs_sync v1_controllers tests kernel-approach1/tests kernel-approach1/bench
	$(VENV)/mypy
	$(VENV)/mypy kernel-approach1/tests kernel-approach1/bench

test: bpf lint
	$(VENV)/pytest -q
	$(MAKE) --no-print-directory kernel-test

unit: deps
	$(VENV)/pytest -q -m unit

bench: bpf
	$(VENV)/bpffs-sync bench

clean-build:
	rm -rf build

# The kernel series: build (from scratch ~21 min here, then incremental with ccache) ...
kernel: deps
	@scripts/install-deps.sh --kernel
	kernel-approach1/scripts/build.sh plain

# ... and fetch -> apply -> build -> boot -> in-guest tests (kernel-approach1/tests), part of `make test`.
kernel-test: deps
	@scripts/install-deps.sh --kernel
	kernel-approach1/scripts/test.sh

# The same tests on the debug config (lockdep, KASAN, kmemleak): a 33 min build from scratch, then ~1.5 h of
# tests under TCG; not part of `make test`.
kernel-debug-test: deps
	@scripts/install-deps.sh --kernel
	kernel-approach1/scripts/test.sh --variant debug

# Every patch of the series builds on its own, -Werror (after `make kernel`; ~4 min).
kernel-bisect: kernel
	kernel-approach1/scripts/bisect-build.sh

# Kernel mirror benchmarks in the guest (link create = cgroup_mutex hold, mkdir cost, reads), vs same-run baselines.
kernel-bench: deps
	@scripts/install-deps.sh --kernel
	kernel-approach1/scripts/test.sh --bench

# The user-space mirror's kernel tests, inside a 7.3 guest (virtme-ng under TCG, ~4 min).
kernel-smoke: kernel bpf
	kernel-approach1/scripts/run-guest.sh --mem 4G .venv/bin/pytest -q -p no:cacheprovider \
		tests/test_hist_oncpu.py tests/test_mirror.py
