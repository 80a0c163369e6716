"""`bpffs-sync report`: the comparative design report (issue 9).

Every number in report.md / report.html / results.json comes from one run: the stock-kernel rows
are measured here, the patched-kernel rows (Approach 1 and Approach 2) in one boot of the image
carrying both series (guest.py picks and records it, inguest.py measures inside it, reusing
kernel-approach2/bench/bench_a2.py's JSON), and a row that could not be measured says why
("not measured: <reason>"), never a made-up figure.

    bed.py         the private kernel state every mechanism reads (bpffs, cgroups, loaded programs)
    compiled.py    builds the C loop (bench/report/readloop.c) and the alternatives' BPF object
    mechanisms.py  one real reader per mechanism: a Python operation and the C loop's arguments;
                   hist_oncpu's routes in two declared variants of equal work (full text, raw value)
    equal.py       the equal-work check: every route of a variant produced the same bytes (or number),
                   C and Python, once per run (results.json equal_work)
    measures.py    read cost (idle, under churn, per-syscall breakdown; mechanisms interleaved in seeded
                   shuffled rounds),
                   mkdir -> readable (one definition of readable), populate, mkdir cost, memory, kernel LOC
    usability.py   the usability table, each cell a check run now (a pinned program or map through a
                   shell user's tool, uid 65534 with a deployment's pin mode, v1 beside each design)
    knob.py        knobs where they are read: a per-cgroup knob read from BPF in sched_switch
                   (bench/report/bpf/knob_read.bpf.c: bpf_cgroup_read_xattr() vs a map lookup), its
                   write, and who may write it (delegation, a cgroup namespace, pin modes), each a
                   check; render_knob.py its section and the verdict's knob sentence
    scrape.py      scale as monitoring does it: every cgroup's stat of N cgroups per scrape, via each
                   route (files, held fds, one iterator, N x BPF_PROG_RUN, batch lookup, cpu.stat x N),
                   each scrape checked to return one value per cgroup; scrape_routes.py the readers,
                   scrape_iter.py the one-walk ones (bench/report/bpf/scrape.bpf.c); render_scrape.py
                   its section and JSON block
    guest.py       the patched-kernel rows, host side: which image, its identity, the boot, the JSON back
    inguest.py     the patched-kernel rows, guest side: both approaches' files, cpu.stat, bench_a2
                   (its mkdir-under-links and stall parts keep every sample)
    runner.py      runs it all with progress and writes results.json
    stats.py       percentiles, bootstrap 95 % intervals (seeded), ratios with intervals, ties, fair
                   maxima, formatting (pure)
    render.py      report.md and report.html (headline, sections, closing note); plots.py the PNGs;
                   render_equal.py the equal-work section and the per-syscall breakdown
    verdict.py     the maintainer's points, each with this run's numbers and intervals; every finding
                   sentence is a tested function of them; the A1/A2 pick weighs axes by WEIGHTS
"""
