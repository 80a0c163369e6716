# Sourced by upstream-selftests-build-tests.sh (with $sel = the tree's tools/testing/selftests/bpf):
# what the full test_progs build leaves out because clang-19 cannot compile it, as make command-line
# overrides in $exclude (the Makefile is used unmodified) and a sentence per exclusion in $excluded.
#
# libarena: libarena.bpf.o is `bpftool gen object` of every libarena/{src,selftests}/*.bpf.c
# (libarena/Makefile, LIBARENA_OBJECTS). A command-line LIBARENA_OBJECTS reaches the libarena sub-make
# through MAKEFLAGS and drops the named objects from the link.
# shellcheck shell=bash
libarena_drop=(asan.bpf.c)  # "unsupported atomic operation" in LLVM 19's BPF backend
libarena_keep=()
for f in "$sel"/libarena/src/*.bpf.c "$sel"/libarena/selftests/*.bpf.c; do
	b=${f##*/}
	[[ " ${libarena_drop[*]} " == *" $b "* ]] || libarena_keep+=("${b%.bpf.c}.bpf.o")
done
exclude+=("LIBARENA_OBJECTS=${libarena_keep[*]}")
excluded+="libarena/src/${libarena_drop[*]} (dropped from libarena.bpf.o via LIBARENA_OBJECTS=...: clang-19's BPF"
excluded+=" backend stops on it with \"unsupported atomic operation\"; without -DBPF_ARENA_ASAN it only adds the"
excluded+=" weak asan_ready() and the license, which the other objects carry too)."
