"""The equal-work check (issue 22, Build 1): in each declared variant every route of hist_oncpu's
read must produce the same output for the same cgroup, from the C loop and from the Python loop:

  full text  the same bytes (the mirror's file, a per-read iterator, BPF_PROG_RUN of stat_text,
             a map lookup formatted in user space);
  raw value  the same number, total_ns (a file printing it alone, its per-read iterator,
             BPF_PROG_RUN of stat_by_id, a map lookup).

produce() runs each route once (readloop with READLOOP_OUT; the Python operation), check() compares
(pure: tests/test_report_equal.py). The runner does it once per run, before the timings, and keeps
the result in results.json["equal_work"]; the report's equal-work table quotes it route by route,
and a route that produced other bytes is shown so, never quoted as equal work. A read mechanism of
another figure (cgroupfs files, netlink) cannot produce either output: check() says why.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from typing import Any

from bpffs_sync import log
from bpffs_sync.measure.report import measures
from bpffs_sync.measure.report.bed import Bed
from bpffs_sync.measure.report.mechanisms import FULL, RAW, ROUTES, Mechanism, Output, value_of

LOOPS = ("c", "py")
_log = log.get(__name__)

Produced = Output | str  # an output, or why the route could not produce one ("failed here: ...")


def produce(bed: Bed, mechs: list[Mechanism]) -> dict[str, dict[str, Produced]]:
    """One operation of every route, C and Python: {key: {"c": output, "py": output}} (a failure: its
    reason as a str). A full-text route's C output is its bytes, a raw route's C output its value."""
    out: dict[str, dict[str, Produced]] = {}
    with tempfile.TemporaryDirectory(prefix="bpffs-sync-equal-") as tmp:
        for m in mechs:
            if not m.variant or m.cloop is None or m.python is None:
                continue
            got: dict[str, Produced] = {}
            try:
                value, data = measures.c_output(bed.tools.readloop, m.cloop, os.path.join(tmp, m.key))
                got["c"] = data if m.variant == FULL else value
            except (OSError, RuntimeError, subprocess.SubprocessError) as err:
                got["c"] = f"failed here: {err}"
            try:
                got["py"] = m.python()
            except (OSError, ValueError) as err:
                got["py"] = f"failed here: {err}"
            out[m.key] = got
    return out


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _first_difference(a: bytes, b: bytes) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _describe(variant: str, got: Output, ref: Output) -> dict[str, Any]:
    if variant == FULL:
        assert isinstance(got, bytes) and isinstance(ref, bytes)
        row: dict[str, Any] = {"bytes": len(got), "sha256": _digest(got), "same": got == ref}
        if got != ref:
            row["first_difference"] = _first_difference(got, ref)
        return row
    return {"value": got, "same": got == ref}


def _wrong_kind(variant: str, got: Produced) -> str | None:
    """Why an output does not fit its variant (a str is already a reason), or None."""
    if isinstance(got, str):
        return got
    if variant == FULL and not isinstance(got, bytes):
        return f"gave a number ({got}), not a text"
    if variant == RAW and not isinstance(got, int):
        return f"gave {len(got)} bytes of text, not a number"
    return None


def check(variant: str, outputs: dict[str, dict[str, Produced]],
          others: dict[str, str] | None = None) -> dict[str, Any]:
    """Compare every route's outputs in `variant` with the reference, the first route's C output (the
    file: ROUTES[variant][0]). {"equal": every route that produced an output produced the reference,
    and "void" is None; "void": why the agreement would prove nothing (no second route to compare,
    a zero reference) or None; "reference": "<key>:c", "routes": {key: {loop: {bytes, sha256, same} | {value, same} |
    {"cannot": why}}}, "differ": ["<key>:<loop>: ..."], "cannot": {key: why}} plus, for the full text,
    the reference's bytes, sha256 and text, for the raw value the reference number. others: read
    mechanisms of another figure, key -> the figure they read."""
    keys = [k for k in ROUTES[variant] if k in outputs]
    out: dict[str, Any] = {"variant": variant, "routes": {}, "differ": [], "cannot": {}}
    ref_key = next((k for k in keys if _wrong_kind(variant, outputs[k].get("c", "")) is None), None)
    if ref_key is None:
        out |= {"equal": False, "reference": None, "void": "no route's C loop produced an output (the reference)"}
        out["cannot"] = {k: (_wrong_kind(variant, outputs[k].get("c", "not run")) or "") if k in outputs
                         else "not run here" for k in ROUTES[variant]}
        return out
    ref = outputs[ref_key]["c"]
    assert not isinstance(ref, str)
    out["reference"] = f"{ref_key}:c"
    if variant == FULL:
        assert isinstance(ref, bytes)
        out |= {"bytes": len(ref), "sha256": _digest(ref), "text": ref.decode(errors="replace")}
    else:
        out["value"] = ref
    for key in keys:
        rows: dict[str, Any] = {}
        for loop in LOOPS:
            got = outputs[key].get(loop, "not run")
            why = _wrong_kind(variant, got)
            if why is not None:
                rows[loop] = {"cannot": why}
                out["cannot"][f"{key}:{loop}"] = why
                continue
            assert not isinstance(got, str)
            rows[loop] = _describe(variant, got, ref)
            if rows[loop]["same"]:
                continue
            if variant == FULL:
                detail = (f"{rows[loop]['bytes']} bytes, first difference at byte {rows[loop]['first_difference']} "
                          f"(reference {out['reference']}: {out['bytes']} bytes)")
            else:
                detail = f"{rows[loop]['value']} (reference {out['reference']}: {out['value']})"
            out["differ"].append(f"{key}:{loop}: {detail}")
        out["routes"][key] = rows
    for key in ROUTES[variant]:
        if key not in outputs:
            out["cannot"][key] = "not run here"
    for key, what in (others or {}).items():
        out["cannot"][key] = cannot_reason(variant, what)
    out["void"] = void_reason(variant, ref, ref_key, out["routes"])
    out["equal"] = not out["differ"] and out["void"] is None
    return out


def void_reason(variant: str, ref: Output, ref_key: str, routes: dict[str, dict[str, Any]]) -> str | None:
    """Why an agreement would prove nothing, or None: no route but the reference's produced an
    output to compare, or the reference carries no figure (total_ns 0: the target cgroup has no
    stats entry, so every route's work is the three zero lines, not the text the timings are for)."""
    compared = [k for k, rows in routes.items() if k != ref_key and any("cannot" not in r for r in rows.values())]
    if not compared:
        return f"only {ref_key} produced an output: nothing was compared"
    try:
        figure = value_of(ref)
    except ValueError as err:  # ParseError, UnicodeDecodeError
        return f"the reference text is not hist_oncpu's text ({err})"
    if figure == 0:
        what = "text" if variant == FULL else "value"
        return f"the reference {what} has total_ns 0 (no stats entry for the target cgroup): equal zeros prove nothing"
    return None


def cannot_reason(variant: str, what: str) -> str:
    """Why a mechanism reading another figure has no output in `variant`."""
    target = "hist_oncpu's text" if variant == FULL else "hist_oncpu's total_ns"
    return f"reads another figure ({what}), the kernel's own: it cannot produce {target}"


def run(bed: Bed, mechs: list[Mechanism]) -> dict[str, Any]:
    """The check of both variants (once per run); a variant whose routes differ is logged."""
    outputs = produce(bed, mechs)
    others = {m.key: m.what for m in mechs if not m.variant and m.kind == "read"}
    doc = {v: check(v, outputs, others) for v in (FULL, RAW)}
    for v, res in doc.items():
        if not res["equal"]:
            _log.warning("equal_work_check_failed", variant=v, differ=res["differ"], void=res["void"],
                         cannot=res["cannot"])
    return doc
