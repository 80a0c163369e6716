"""Percentiles, ratios and number formatting for the report. Pure: no I/O, unit-tested.

Samples are nanoseconds (ints); summaries are microseconds. A ratio is only made from two numbers
measured in the same run, and is None when either is missing or the baseline is zero, so the
renderer can say so instead of printing inf or NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no samples")
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])


def summarize_ns(samples: Sequence[int]) -> dict[str, float]:
    """p50/p90/p99/min/max/mean in microseconds, and the sample count."""
    us = [s / 1000.0 for s in samples]
    return {
        "n": float(len(us)),
        "p50_us": percentile(us, 0.50),
        "p90_us": percentile(us, 0.90),
        "p99_us": percentile(us, 0.99),
        "min_us": min(us),
        "max_us": max(us),
        "mean_us": sum(us) / len(us),
    }


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline <= 0 or not math.isfinite(value):
        return None
    return value / baseline


def cdf(samples: Sequence[int], points: int = 200) -> tuple[list[float], list[float]]:
    """(latency in us, cumulative fraction), downsampled to at most `points` steps."""
    ordered = sorted(samples)
    n = len(ordered)
    if n == 0:
        return [], []
    step = max(1, n // points)
    idx = [*range(0, n, step), n - 1] if (n - 1) % step else list(range(0, n, step))
    return [ordered[i] / 1000.0 for i in idx], [(i + 1) / n for i in idx]


def fmt_us(value: float) -> str:
    """Microseconds with 3 significant figures: 0.412 us, 41.2 us, 4120 us."""
    if value >= 100:
        return f"{value:.0f} us"
    if value >= 10:
        return f"{value:.1f} us"
    if value >= 1:
        return f"{value:.2f} us"
    return f"{value:.3f} us"


def fmt_ratio(r: float | None, baseline: str) -> str:
    if r is None:
        return f"no ratio: {baseline} not measured"
    return f"{r:.2f}x {baseline}"


def fmt_bytes(n: float) -> str:
    if abs(n) >= 1 << 20:
        return f"{n / (1 << 20):.1f} MiB"
    if abs(n) >= 1 << 10:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n:.0f} B"


def not_measured(reason: str) -> dict[str, Any]:
    """The one shape of a row that could not be measured."""
    return {"not_measured": reason}


def is_measured(entry: Any) -> bool:
    return isinstance(entry, dict) and "not_measured" not in entry


def bad_numbers(doc: Any, path: str = "") -> list[str]:
    """Paths of every NaN or infinite float in a JSON-able document (there must be none)."""
    if isinstance(doc, float):
        return [] if math.isfinite(doc) else [path or "."]
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in bad_numbers(v, f"{path}.{k}")]
    if isinstance(doc, list):
        return [p for i, v in enumerate(doc) for p in bad_numbers(v, f"{path}[{i}]")]
    return []
