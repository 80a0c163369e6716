"""Per-cgroup metric families in the Prometheus text format (0.0.4), from the mirror's files.

Two detail levels (`export --detail`), chosen for cardinality -- what a cgroup costs in series:
- `summary` (the default): each stat's distribution is a Prometheus summary without quantiles, `_sum`
  and `_count` only (the mean: rate(_sum) / rate(_count)), plus the stat's gauges and counters:
  2 series per cgroup for hist_oncpu, 6 for memcg_histo (a v1 memory cgroup), at most 10 for any.
- `buckets`: the same family as a histogram with the log2 buckets (`--bucket-stride K` keeps every K-th
  boundary): 29 series per histogram at stride 1. _sum and _count are the same series at both levels,
  so a dashboard of means survives switching.

Each stat file is parsed with histogram.parse_stat. At `buckets` its log2 histogram becomes a real
Prometheus histogram in seconds: slot i holds durations of 2^i .. 2^(i+1)-1 usecs (slot 0: 0 -> 1), i.e. less
than 2^(i+1) usecs, so its bucket is le = 2^(i+1) * 1e-6 s, cumulative. The last slot is clamped
(>= 2^26 usecs) so it only counts towards +Inf. `_count` is the file's count line (`slices`,
`reclaims`) and `_sum` its nanosecond total in seconds; the file's lines are read by the BPF
program at slightly different moments, so +Inf and `_count` are max(count, sum of slots) to keep
the buckets monotonic.

Written by hand rather than through prometheus_client's exposition: 2 000 cgroups at `buckets` are ~60 000
samples, which prometheus_client renders in ~0.3 s of CPU, this in ~0.02 s (bench `export`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bpffs_sync.export.files import Reading
from bpffs_sync.export.workload import workload_labels
from bpffs_sync.histogram import ParseError, parse_stat
from bpffs_sync.printable import escape

MAX_SLOTS = 27  # bpf/stat_common.h
PREFIX = "bpffs_sync_"
SUMMARY = "summary"  # detail levels (module doc)
BUCKETS = "buckets"
DETAILS = (SUMMARY, BUCKETS)


@dataclass(frozen=True, slots=True)
class HistogramSpec:
    name: str
    help: str
    sum_key: str  # nanoseconds
    count_key: str


@dataclass(frozen=True, slots=True)
class ValueSpec:
    key: str
    name: str
    kind: str  # gauge or counter
    help: str


@dataclass(frozen=True, slots=True)
class StatMetrics:
    histogram: HistogramSpec
    values: tuple[ValueSpec, ...] = ()


STATS: dict[str, StatMetrics] = {
    "hist_oncpu": StatMetrics(HistogramSpec(
        "hist_oncpu_seconds", "On-CPU slice lengths of the cgroup's tasks and its descendants' (hist_oncpu); "
        "_sum is their on-CPU time (total_ns), _count the slices.", "total_ns", "slices")),
    "memcg_histo": StatMetrics(
        HistogramSpec("memcg_reclaim_seconds", "Time the cgroup's tasks spent in memcg direct reclaim "
                      "(memcg_histo); _sum is reclaim_ns, _count the reclaims.", "reclaim_ns", "reclaims"),
        (
            ValueSpec("usage_bytes", "memcg_usage_bytes", "gauge", "memcg page counter usage (memcg_histo)."),
            ValueSpec("limit_bytes", "memcg_limit_bytes", "gauge", "memcg page counter limit (memcg_histo)."),
            ValueSpec("max_usage_bytes", "memcg_max_usage_bytes", "gauge",
                      "memcg page counter high-water mark (memcg_histo)."),
            ValueSpec("failcnt", "memcg_failcnt_total", "counter",
                      "Times the memcg page counter hit its limit (memcg_histo failcnt)."),
        ),
    ),
}


def bucket_bounds(stride: int = 1) -> list[tuple[int, str]]:
    """(slot index, le text) of the finite buckets: every `stride`-th log2 boundary (a subset of a
    cumulative histogram's boundaries is still exact)."""
    return [(i, repr((1 << (i + 1)) / 1e6)) for i in range(MAX_SLOTS - 1) if (i + 1) % stride == 0]


def _text_format(text: str) -> str:
    """The text format's own escapes of a label value (backslash, double quote, line feed)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def label_value(name: str) -> str:
    """A cgroup name or path as a label value: printable.escape's text (the CLI's: every non-printable
    character, a byte that is not UTF-8, and the backslash itself escaped, so the value is one printable
    line and two names never share one), then the text format's escapes."""
    return _text_format(escape(name))


def labels(reading: Reading) -> str:
    """`hierarchy` (v1 trees), `cgroup`, then the workload labels of the path (workload.py; already
    validated: only the text format's escapes)."""
    out = f'cgroup="{label_value(reading.cgroup)}"'
    if reading.hierarchy:
        out = f'hierarchy="{label_value(reading.hierarchy)}",{out}'
    for key, value in workload_labels(reading.cgroup):
        out += f',{key}="{_text_format(value)}"'
    return out


@dataclass(slots=True)
class Families:
    """Lines per family, kept apart so each family's samples are contiguous in the output."""

    stride: int = 1
    detail: str = SUMMARY
    lines: dict[str, list[str]] = field(default_factory=dict)
    parse_errors: int = 0
    bounds: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bounds = bucket_bounds(self.stride)
        for spec in STATS.values():
            self.lines.setdefault(spec.histogram.name, [])
            for v in spec.values:
                self.lines.setdefault(v.name, [])

    def add(self, reading: Reading) -> None:
        spec = STATS.get(reading.stat)
        if spec is None:
            return
        try:
            parsed = parse_stat(reading.text)
        except ParseError:
            self.parse_errors += 1
            return
        lab = labels(reading)
        for v in spec.values:
            value = parsed.summary.get(v.key)
            if value is not None:
                self.lines[v.name].append(f"{PREFIX}{v.name}{{{lab}}} {value}\n")
        self._histogram(spec.histogram, lab, parsed.slots, parsed.summary)

    def _histogram(self, h: HistogramSpec, lab: str, slots: list[int], summary: dict[str, int]) -> None:
        out = self.lines[h.name]
        if self.detail == SUMMARY:  # the same _sum and _count series as at the buckets level
            out.append(f"{PREFIX}{h.name}_sum{{{lab}}} {summary.get(h.sum_key, 0) / 1e9!r}\n")
            out.append(f"{PREFIX}{h.name}_count{{{lab}}} {max(summary.get(h.count_key, 0), sum(slots))}\n")
            return
        pre = f"{PREFIX}{h.name}_bucket{{{lab},le=\""
        cum = [0] * MAX_SLOTS
        acc = 0
        for i, v in enumerate(slots[:MAX_SLOTS]):
            acc += v
            cum[i] = acc
        for i in range(len(slots), MAX_SLOTS):
            cum[i] = acc
        count = max(summary.get(h.count_key, 0), acc)
        out.extend(f'{pre}{le}"}} {cum[i]}\n' for i, le in self.bounds)
        out.append(f'{pre}+Inf"}} {count}\n')
        out.append(f"{PREFIX}{h.name}_sum{{{lab}}} {summary.get(h.sum_key, 0) / 1e9!r}\n")
        out.append(f"{PREFIX}{h.name}_count{{{lab}}} {count}\n")

    def text(self) -> str:
        parts: list[str] = []
        for spec in STATS.values():
            kind = "histogram" if self.detail == BUCKETS else "summary"
            metrics = [(spec.histogram.name, kind, spec.histogram.help)]
            metrics += [(v.name, v.kind, v.help) for v in spec.values]
            for name, kind, help_text in metrics:
                if self.lines[name]:
                    parts.append(f"# HELP {PREFIX}{name} {help_text}\n# TYPE {PREFIX}{name} {kind}\n")
                    parts.extend(self.lines[name])
        return "".join(parts)


def render(readings: list[Reading], stride: int = 1, detail: str = SUMMARY) -> Families:
    fams = Families(stride, detail)
    for r in readings:
        fams.add(r)
    return fams
