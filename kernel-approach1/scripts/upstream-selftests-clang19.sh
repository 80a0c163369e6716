# Sourced by upstream-selftests-build-tests.sh (with $sel = the tree's tools/testing/selftests/bpf): what
# the full test_progs build needs to build with clang-19, as make command-line overrides in $exclude (the
# Makefile is used unmodified), and one sentence per override in $excluded (written to EXCLUDED and into
# the table). Nothing is left out of the build.
#
# libarena (libarena/Makefile) compiles its BPF objects with no -mcpu, i.e. the compiler's default CPU:
# v3 from LLVM 20 on, v1 in LLVM 19. At v1 every libarena object fails in bpf_arena_spin_lock.h:216
# ("unsupported atomic operation, please use 64 bit version": v1 has no atomic fetch/xchg/cmpxchg);
# asan.bpf.c is merely the first one make reaches. At v3, test_buddy.bpf.c:80 fails on a signed modulo
# ("unsupported signed division", LLVM 19 lowers `(i * 5) % 8` for a signed i to an sdiv-class op); v4 has
# signed division and Linux 7.3 runs v4 programs. The libarena sub-make gets BPF_CFLAGS="$(BPF_CFLAGS)
# $(CLANG_CFLAGS)" from the parent, so -mcpu=v4 goes into CLANG_CFLAGS (used only by this Makefile; the
# test_progs objects' own rule puts -mcpu=v3 after it, and the last -mcpu wins: they are built as upstream).
# shellcheck shell=bash
exclude+=('CLANG_CFLAGS=$(CLANG_SYS_INCLUDES) -mcpu=v4')
excluded+="nothing. One command-line override for clang-19: CLANG_CFLAGS='\$(CLANG_SYS_INCLUDES) -mcpu=v4', so"
excluded+=" libarena's objects (built at the compiler's default CPU: v1 in LLVM 19, v3 from LLVM 20) get the atomics"
excluded+=" of v3 (\"unsupported atomic operation\" in bpf_arena_spin_lock.h at v1, first seen on asan.bpf.c) and the"
excluded+=" signed modulo of v4 (test_buddy.bpf.c:80 at v3); test_progs' own objects keep their -mcpu=v3 (the"
excluded+=" rule's later -mcpu wins)."
