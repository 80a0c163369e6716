"""Several guest boots' results as one (issue 22, item 3). Pure: no I/O, unit-tested.

Each boot of the patched image gives one document of the same shape (inguest.py). pool() makes the
document the report renders, of that same shape:
  - every raw sample list (a key `samples_ns` or ending in `_samples_ns`, or a list inside such a
    dict) is the boots' lists concatenated, in boot order; a node holding one gets its `summary`
    recomputed from the pooled samples, so medians, bootstrap intervals and n are over all boots;
  - counts (COUNTS, or a key ending in one of COUNT_SUFFIXES) are summed; `first_try` (a fraction
    of `tries`) is the pooled fraction; `attempts_max` the largest;
  - any other number is the median of the boots' values (a scalar the report prints once);
  - a part one boot could not measure is pooled over the boots that did (`boots_missing` in the
    spread says which did not); measured by none, it stays the first boot's reason.
spread() is the between-boot view: for every sample list, each boot's median (us), and for every
other number each boot's value, keyed by the path in the document ("stock.read.prog_run.c").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bpffs_sync.measure.report import stats

COUNTS = frozenset({"tries", "readable", "timeouts", "rounds", "idle_samples"})
COUNT_SUFFIXES = ("_tries", "_tries_overlapped", "_overlapping")


def is_samples_key(key: str) -> bool:
    return key == "samples_ns" or key.endswith("_samples_ns")


def _is_count(key: str) -> bool:
    return key in COUNTS or key.endswith(COUNT_SUFFIXES)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _concat(parts: list[Any]) -> Any:
    """Sample lists concatenated; a dict of them (bench_a2's mkdir) concatenated key by key."""
    if all(isinstance(p, list) for p in parts):
        return [s for p in parts for s in p]
    if all(isinstance(p, dict) for p in parts):
        return {k: _concat([p[k] for p in parts if k in p]) for k in parts[0]}
    return parts[0]


def pool(boots: Sequence[Any]) -> Any:
    """The boots' documents (the same shape) as one; see the module's docstring."""
    if not boots:
        raise ValueError("pool of no boots")
    if all(isinstance(b, dict) for b in boots):
        measured = [b for b in boots if stats.is_measured(b)]
        if not measured:
            return boots[0]
        return _pool_dicts(measured)
    values = [b for b in boots if _number(b)]
    if len(values) == len(boots) and values:
        m = _median(values)
        return int(m) if all(isinstance(v, int) for v in values) and m.is_integer() else m
    return boots[0]


def _pool_dicts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in parts[0]:
        have = [p[key] for p in parts if key in p]
        if is_samples_key(key):
            out[key] = _concat(have)
        elif key == "first_try" and all("tries" in p for p in parts):
            tries = sum(int(p["tries"]) for p in parts)
            out[key] = sum(float(p[key]) * int(p["tries"]) for p in parts) / tries if tries else 0.0
        elif key == "attempts_max" and all(_number(v) for v in have):
            out[key] = max(have)
        elif _is_count(key) and all(_number(v) for v in have):
            out[key] = sum(have)
        else:
            out[key] = pool(have)
    samples = out.get("samples_ns")
    if "summary" in out and isinstance(samples, list) and samples:
        out["summary"] = stats.summarize_ns(samples)
    return out


def _p50_us(samples: list[Any]) -> float | None:
    return stats.percentile(samples, 0.5) / 1e3 if samples and all(_number(s) for s in samples) else None


def spread(boots: Sequence[Any], path: str = "") -> dict[str, list[float | None]]:
    """path -> per-boot medians (us) of every sample list, and per-boot values of every other number
    (None where that boot has none); a part missing or not measured in some boot: path + ".boots_missing"
    -> the 0-based indices of those boots."""
    out: dict[str, list[float | None]] = {}
    if not any(isinstance(b, dict) for b in boots):
        if any(_number(b) for b in boots):
            out[path] = [float(b) if _number(b) else None for b in boots]
        return out
    missing = [float(i) for i, b in enumerate(boots) if not stats.is_measured(b)]
    if missing and len(missing) < len(boots):
        out[f"{path}.boots_missing"] = list(missing)
    keys: list[str] = []
    for b in boots:
        if stats.is_measured(b):
            keys += [k for k in b if k not in keys]
    for key in keys:
        sub = f"{path}.{key}" if path else key
        vals = [b.get(key) if stats.is_measured(b) else None for b in boots]
        if is_samples_key(key):
            out |= _sample_spread(vals, sub)
        elif key != "summary":
            out |= spread(vals, sub)
    return out


def _sample_spread(vals: list[Any], path: str) -> dict[str, list[float | None]]:
    """Each boot's median (us) of the sample list at path; a dict of lists, key by key."""
    if all(v is None or isinstance(v, list) for v in vals):
        return {path: [_p50_us(v) if v else None for v in vals]}
    out: dict[str, list[float | None]] = {}
    for k in sorted({k for v in vals if isinstance(v, dict) for k in v}):
        out |= _sample_spread([v.get(k) if isinstance(v, dict) else None for v in vals], f"{path}.{k}")
    return out


def per_boot(spread_map: dict[str, list[float | None]], path: str) -> list[float | None] | None:
    """The per-boot medians of the sample list at `path` (a series: its samples_ns), or None."""
    return spread_map.get(f"{path}.samples_ns", spread_map.get(path))


def fmt_spread(values: list[float | None] | None) -> str:
    """'boots: 41.2 / 40.9 / 43.0 us' (each boot's median), or '' with fewer than two boots."""
    if not values or len(values) < 2:
        return ""
    return "boots: " + " / ".join(stats.fmt_us(v).removesuffix(" us") if v is not None else "-" for v in values) \
        + " us"
