"""Percentiles, bootstrap intervals, ratios and number formatting for the report. Pure: no I/O,
unit-tested.

Samples are nanoseconds (ints); summaries are microseconds. A ratio is only made from two numbers
measured in the same run, and is None when either is missing or the baseline is zero, so the
renderer can say so instead of printing inf or NaN.

Uncertainty (issue 22, item 3): every quantile the report compares carries a percentile-bootstrap
95 % interval and its n (Est); a ratio of two samples resamples both sides (RatioEst), and it is a
tie when its interval straddles 1.0 (never a fixed band). The bootstrap is seeded (SEED) so one
results.json always renders the same intervals. Maxima are compared only at equal n (worst()).

How the bootstrap is drawn: the statistic is the nearest-rank quantile, the r-th smallest of n
values (r = ceil(q n)). In a resample of n values drawn uniformly with replacement, the index of its
r-th smallest value is floor(n U) where U is the r-th smallest of n uniforms on [0, 1) (floor is
monotone, so order statistics carry over), and U ~ Beta(r, n - r + 1). Each bootstrap replicate is
thus sorted[floor(n * betavariate(r, n - r + 1))]: the same distribution as resampling all n values,
at O(1) per replicate instead of O(n) (test_bootstrap_matches_naive_resampling checks it).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

SEED = 22  # the bootstrap's seed: recorded in results.json (meta.stats); same doc -> same intervals
BOOT = 2000  # bootstrap replicates per interval
LEVEL = 0.95


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no samples")
    return float(sorted(values)[_rank(len(values), q) - 1])


def _rank(n: int, q: float) -> int:
    """The 1-based rank of the nearest-rank q-quantile of n values (percentile and the bootstrap's)."""
    return min(n, max(1, math.ceil(q * n)))


@functools.lru_cache(maxsize=64)
def boot_ranks(n: int, q: float, seed: int, b: int = BOOT) -> tuple[int, ...]:
    """The 0-based indices, into a sorted sample of n, of b bootstrap replicates of its nearest-rank
    q-quantile. They depend on n, q and the seed only, not on the values: computed once per key."""
    rng = random.Random(seed)
    r = _rank(n, q)
    return tuple(min(n - 1, int(n * rng.betavariate(r, n - r + 1))) for _ in range(b))


def boot_quantile(ordered: Sequence[float], q: float, seed: int, b: int = BOOT) -> list[float]:
    """b bootstrap replicates of the nearest-rank q-quantile of the sorted sample `ordered`."""
    return [float(ordered[i]) for i in boot_ranks(len(ordered), q, seed, b)]


@dataclass(frozen=True, slots=True)
class Est:
    """A quantile of one sample with its bootstrap interval; in the sample's unit."""

    value: float
    lo: float
    hi: float
    n: int
    q: float = 0.5


@dataclass(frozen=True, slots=True)
class RatioEst:
    """num / den of a quantile of two samples, with the bootstrap interval of the ratio."""

    value: float
    lo: float
    hi: float
    n_num: int
    n_den: int
    q: float = 0.5

    @property
    def tie(self) -> bool:
        """Neither side is shown to be larger: the interval holds 1.0."""
        return self.lo <= 1.0 <= self.hi

    def side(self) -> str:
        """'higher' (num > den), 'lower' or 'tie', by the interval."""
        return "tie" if self.tie else "higher" if self.lo > 1.0 else "lower"


def _bounds(reps: list[float], level: float = LEVEL) -> tuple[float, float]:
    reps = sorted(reps)
    tail = (1 - level) / 2
    return reps[int(tail * (len(reps) - 1))], reps[math.ceil((1 - tail) * (len(reps) - 1))]


def estimate(samples: Sequence[float], q: float = 0.5, *, scale: float = 1.0, seed: int = SEED) -> Est | None:
    """The q-quantile of samples (times scale) with its bootstrap 95 % interval; None for no samples."""
    if not samples:
        return None
    ordered = sorted(s * scale for s in samples)
    lo, hi = _bounds(boot_quantile(ordered, q, seed))
    return Est(percentile(ordered, q), lo, hi, len(ordered), q)


def ratio_est(num: Sequence[float], den: Sequence[float], q: float = 0.5, *, seed: int = SEED) -> RatioEst | None:
    """Quantile(num) / quantile(den), both resampled (independent streams of one seeded RNG)."""
    if not num or not den:
        return None
    a, b = sorted(num), sorted(den)
    ra, rb = boot_quantile(a, q, seed), boot_quantile(b, q, seed + 1)  # two independent streams
    reps = [x / y for x, y in zip(ra, rb, strict=True) if y > 0]
    top = percentile(b, q)
    if top <= 0 or len(reps) < len(ra) // 2:
        return None
    lo, hi = _bounds(reps)
    return RatioEst(percentile(a, q) / top, lo, hi, len(a), len(b), q)


@dataclass(frozen=True, slots=True)
class Worst:
    """The tails of two samples compared fairly: max at equal n, else p99 (stat says which)."""

    stat: str  # "max" | "p99"
    a: float
    b: float
    n_a: int
    n_b: int
    x: float | None  # b / a (None: a is 0)
    ci: RatioEst | None  # the p99 ratio's bootstrap interval; None for maxima (a max has none)


def worst(a: Sequence[float], b: Sequence[float], *, seed: int = SEED) -> Worst | None:
    """The worst of b against the worst of a: maxima only when both have the same n (a max grows
    with n), otherwise the p99 of each, and their ratio with its interval."""
    if not a or not b:
        return None
    if len(a) == len(b):
        ma, mb = float(max(a)), float(max(b))
        return Worst("max", ma, mb, len(a), len(b), ratio(mb, ma), None)
    pa, pb = percentile(a, 0.99), percentile(b, 0.99)
    return Worst("p99", pa, pb, len(a), len(b), ratio(pb, pa), ratio_est(b, a, 0.99, seed=seed))


def fmt_est(e: Est | None, missing: str = "not measured: no samples") -> str:
    """'41.2 us [40.9, 41.6] n=20000' (a quantile in us with its 95 % interval and n)."""
    if e is None:
        return missing
    return f"{fmt_us(e.value)} [{_num(e.lo)}, {_num(e.hi)}] n={e.n}"


def fmt_ratio_est(r: RatioEst | None, baseline: str) -> str:
    """'2.01x cpu.stat [1.98, 2.04], n=20000/20000'."""
    if r is None:
        return f"no ratio: {baseline} not measured"
    return f"{r.value:.2f}x {baseline} [{r.lo:.2f}, {r.hi:.2f}], n={r.n_num}/{r.n_den}"


def _num(v: float) -> str:
    """A bound in the precision fmt_us gives its value, without the unit."""
    return fmt_us(v).removesuffix(" us")


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


def is_measured(entry: Any) -> TypeGuard[dict[str, Any]]:
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


def dig(d: Any, *path: str) -> Any:
    """d[path[0]][path[1]]...: None where a key is missing or a level is not a dict (results.json
    parts a run did not measure)."""
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d
