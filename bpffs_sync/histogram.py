"""The stat-file text format: `key: value` summary lines, then a log2 histogram in the layout of
bcc's print_log2_hist (runqlat, cpudist). The BPF readers print it; this module is the reference
printer and the parser (tests check that the kernel's output is exactly what format() gives).
"""

from __future__ import annotations

from dataclasses import dataclass, field

BAR_WIDTH = 40


@dataclass(slots=True)
class StatFile:
    summary: dict[str, int] = field(default_factory=dict)
    unit: str = ""
    slots: list[int] = field(default_factory=list)


def bucket_bounds(i: int) -> tuple[int, int]:
    """Slot i covers [low, high]; slot 0 is 0 -> 1, slot i>0 is 2^i .. 2^(i+1)-1."""
    low = (1 << (i + 1)) >> 1
    high = (1 << (i + 1)) - 1
    if low == high:
        low -= 1
    return low, high


def format_log2_hist(slots: list[int], unit: str) -> str:
    """print_log2_hist(): nothing for an empty histogram; rows up to the last non-zero slot."""
    idx_max = max((i for i, v in enumerate(slots) if v), default=-1)
    if idx_max < 0:
        return ""
    vmax = max(slots)
    lines = [f"{'':5}{unit:<19} : count    distribution"]
    for i in range(idx_max + 1):
        low, high = bucket_bounds(i)
        val = slots[i]
        stars = min(val * BAR_WIDTH // vmax, BAR_WIDTH)
        bar = "*" * stars + " " * (BAR_WIDTH - stars)
        lines.append(f"{low:>10} -> {high:<10} : {val:<8} |{bar}|")
    return "\n".join(lines) + "\n"


def format_stat(stat: StatFile) -> str:
    head = "".join(f"{k}: {v}\n" for k, v in stat.summary.items())
    return head + format_log2_hist(stat.slots, stat.unit)


class ParseError(ValueError):
    pass


def parse_stat(text: str) -> StatFile:
    """Parse a stat file. Raises ParseError on a line that fits neither part."""
    out = StatFile()
    for line in text.splitlines():
        if not line.strip():
            continue
        if "->" in line and "|" in line:
            left, _, rest = line.partition(":")
            count = rest.split("|", 1)[0].strip()
            try:
                low = int(left.split("->")[0])
                value = int(count)
            except ValueError as err:
                raise ParseError(f"bad histogram row: {line!r}") from err
            idx = 0 if low == 0 else low.bit_length() - 1
            while len(out.slots) <= idx:
                out.slots.append(0)
            out.slots[idx] = value
        elif line.rstrip().endswith("distribution"):
            out.unit = line.split(":")[0].strip()
        else:
            key, sep, text_value = line.partition(":")
            try:
                out.summary[key.strip()] = int(text_value)
            except ValueError as err:
                raise ParseError(f"bad summary line: {line!r}") from err
            if not sep:
                raise ParseError(f"bad line: {line!r}")
    return out


@dataclass(slots=True)
class Log2Us:
    """A log2 histogram of durations in microseconds, in the slots the stat files use (slot i
    holds [2^i, 2^(i+1)) us, slot 0 also 0): the daemon's own figures (event -> mirrored lag,
    pass duration), kept in its telemetry and exported as Prometheus histograms."""

    slots: list[int] = field(default_factory=lambda: [0] * 32)
    count: int = 0
    sum_seconds: float = 0.0

    def observe(self, seconds: float) -> None:
        us = max(0, int(seconds * 1e6))
        self.slots[min(max(us.bit_length() - 1, 0), len(self.slots) - 1)] += 1
        self.count += 1
        self.sum_seconds += max(0.0, seconds)

