"""`bpffs-sync report [--out DIR] [--quick] [--kernel auto|yes|no] [--json]`: run, then write
report.md, report.html, the PNG plots and results.json (every raw sample) into DIR. Its options are
defined in cli.py, which imports this module only when `report` runs (the agent never imports the lab)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from bpffs_sync import log, preflight
from bpffs_sync.errors import EnvironmentProblem, UsageError
from bpffs_sync.programs import lookup


def write(doc: dict[str, Any], out: Path) -> dict[str, Any]:
    """Render doc into out; returns what was written, any unfilled cell and any failed equal-work check
    (there must be none: the report is written all the same, and the command exits 1)."""
    from bpffs_sync.measure.report import plots, render, render_equal, stats

    images = plots.all_plots(doc, out)
    secs = render.sections(doc)
    problems = (render.check_cells(secs) + [f"results.json{p}: not finite" for p in stats.bad_numbers(doc)]
                + render_equal.problems(doc))
    (out / "report.md").write_text(render.to_markdown(secs) + "\n", encoding="utf-8")
    (out / "report.html").write_text(render.to_html(secs), encoding="utf-8")
    doc["headline"] = render.headline(doc)
    (out / "results.json").write_text(json.dumps(doc, allow_nan=False), encoding="utf-8")
    return {"out": str(out), "files": ["report.md", "report.html", "results.json", *images],
            "headline": doc["headline"], "problems": problems}


LAB_MODULES = ("matplotlib", "pyroute2", "tqdm")  # the `lab` extra (pyproject.toml); the agent needs none


def require_lab() -> None:
    """The report runs from the lab's install: one line naming the extra when it is not there."""
    missing = [m for m in LAB_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise EnvironmentProblem("report", ", ".join(missing), 0,
                                 "not installed: the report is the lab's (pip install 'bpffs-sync[lab]', "
                                 "or pip install --require-hashes -r requirements/lab.lock)")


def main(args: argparse.Namespace) -> int:
    require_lab()
    from bpffs_sync.measure.report.runner import Plan, run

    preflight.require_root()
    preflight.require_kernel()
    preflight.require_objects([lookup("hist_oncpu")])
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError("report --out", str(out), 0, "exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EnvironmentProblem("report --out", str(out), err.errno or 0) from err
    if args.log_level == "info":  # progress bars and the report are the output; keep the loader quiet
        log.setup(args.log_format, "warning")
    doc = run(out, Plan.make(args.quick, args.kernel, boots=getattr(args, "boots", None)))
    result = write(doc, out)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"wrote {', '.join(result['files'])} to {os.path.abspath(out)}")
        for line in result["headline"]:
            print(f"  {line}")
        for p in result["problems"]:
            print(f"  problem: {p}")
    return 0 if not result["problems"] else 1
