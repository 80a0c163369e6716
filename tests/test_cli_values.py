"""Option values: every bad one is a usage error, exit 2, one line (issue 8, class 5)."""

from __future__ import annotations

import os
import tempfile

import pytest
from helpers import Mirror, assert_one_line_error, cli

from bpffs_sync.cli import build_parser


def _usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Parse argv in-process (parse only: should a value slip through, no command runs); it must exit 2
    with one `bpffs-sync: error:` line. Returns the line."""
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(list(argv))
    err = capsys.readouterr().err
    assert done.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bpffs-sync: error: "), err
    return lines[0]


@pytest.mark.unit
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "0.05", "86401", "1e9", "x", ""])
def test_resync_interval_out_of_bounds(capsys: pytest.CaptureFixture[str], value: str) -> None:
    """--resync-interval must be a finite number of seconds in 0.1 .. 86400."""
    line = _usage_error(capsys, "run", f"--resync-interval={value}")
    assert "argument --resync-interval" in line


@pytest.mark.unit
@pytest.mark.parametrize("value", ["0.1", "30", "86400"])
def test_resync_interval_bounds_accepted(value: str) -> None:
    """The bounds themselves are accepted (and parsed as seconds)."""
    args = build_parser().parse_args(["run", "--resync-interval", value])
    assert args.resync_interval == float(value)


@pytest.mark.unit
def test_resync_interval_bounds_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    """`run --help` states the bounds."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    assert "0.1 .. 86400" in " ".join(capsys.readouterr().out.split())


@pytest.mark.unit
@pytest.mark.parametrize(("argv", "needle"), [
    (["run", "--bpffs="], "argument --bpffs: empty path"),
    (["verify", "--bpffs", ""], "argument --bpffs: empty path"),
    (["status", "--cgroup-root="], "argument --cgroup-root: empty path"),
    (["stop", "--bpffs="], "argument --bpffs: empty path"),
    (["run", "--v1="], "argument --v1: empty selector"),
    (["bench", "--count", "0"], "argument --count"),
    (["bench", "--count", "-5"], "argument --count"),
    (["bench", "--count", "1.5"], "argument --count"),
    (["bench", "--count", "100001"], "argument --count"),
    (["bench", "--reads", "0"], "argument --reads"),
    (["bench", "--reads", "nan"], "argument --reads"),
    (["demo", "--seconds", "0"], "argument --seconds"),
    (["demo", "--seconds", "nan"], "argument --seconds"),
    (["demo", "--seconds", "inf"], "argument --seconds"),
    (["stop", "--timeout", "0"], "argument --timeout"),
    (["stop", "--timeout", "inf"], "argument --timeout"),
])
def test_bad_values_are_usage_errors(capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    """Empty paths, empty selectors, and numbers out of range or not finite."""
    assert needle in _usage_error(capsys, *argv)


@pytest.mark.unit
def test_bench_metavar_names_every_benchmark() -> None:
    """cli.py may not import the lab, so `bench`'s metavar spells the benchmarks out: it must be the
    list bench_command.BENCHES checks against, in the same order."""
    import argparse

    from bpffs_sync.measure.bench_command import BENCHES

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    what = next(a for a in sub.choices["bench"]._actions if a.dest == "what")
    assert what.metavar == "{" + ",".join(BENCHES) + "}"


@pytest.mark.parametrize(("argv", "needle"), [
    (["run", "--json"], "run --json: only with --kernel"),
    (["run", "--kernel", "--once"], "not with --kernel"),
    (["run", "--kernel", "--no-watch"], "not with --kernel"),
    (["run", "--kernel", "--resync-interval", "5"], "not with --kernel"),
    (["run", "--once", "--no-watch"], "not with --once"),
    (["run", "--once", "--resync-interval", "5"], "not with --once"),
    (["verify", "--kernel", "--program", "hist_oncpu"], "verify --kernel --program: not with --kernel"),
    (["bench", "read", "--count", "5"], "bench --count: only for lag and sync"),
    (["bench", "lag", "--reads", "5"], "bench --reads: only for read"),
])
def test_meaningless_combinations_are_refused(argv: list[str], needle: str) -> None:
    """An option the command would silently ignore is refused."""
    assert_one_line_error(cli(*argv), needle)


def test_program_given_twice(mirror: Mirror) -> None:
    """--program NAME twice is a usage error, not a doubled tree."""
    assert_one_line_error(mirror.cli("run", "--once", "--program", "hist_oncpu", "--program", "hist_oncpu"),
                          "--program hist_oncpu: given twice")


@pytest.mark.parametrize("option", ["--bpffs", "--cgroup-root"])
def test_file_where_a_directory_is_expected(mirror: Mirror, option: str) -> None:
    """A regular file for a directory option: `Not a directory`, naming the option and the file."""
    with tempfile.NamedTemporaryFile() as f:
        argv = {"--bpffs": mirror.bpffs, "--cgroup-root": mirror.cgroup_root, option: f.name}
        res = cli("verify", "--bpffs", argv["--bpffs"], "--cgroup-root", argv["--cgroup-root"], env=mirror.env)
    assert_one_line_error(res, f"{option} {f.name}: Not a directory")


def test_missing_bpffs_directory(mirror: Mirror) -> None:
    """An explicit --bpffs that does not exist: `No such file or directory`, naming the option."""
    res = cli("verify", "--bpffs", "/nonexistent-bpffs", "--cgroup-root", mirror.cgroup_root)
    assert_one_line_error(res, "--bpffs /nonexistent-bpffs: No such file or directory")


def test_v1_file_is_not_a_directory(mirror: Mirror) -> None:
    """--v1 with a regular file: `Not a directory`, before anything runs."""
    with tempfile.NamedTemporaryFile() as f:
        res = mirror.cli("run", "--once", "--v1", f.name)
    assert_one_line_error(res, f"--v1 {f.name}: Not a directory")


@pytest.mark.parametrize("where", ["plain", "v2 cgroup"])
def test_v1_directory_that_is_not_v1_is_refused(mirror: Mirror, where: str) -> None:
    """--v1 with a directory no mounted v1 hierarchy holds (a plain one, a v2 cgroup): exit 2, not a warning."""
    with tempfile.TemporaryDirectory() as tmp:
        path = tmp if where == "plain" else mirror.cgroup_root
        res = mirror.cli("run", "--once", "--v1", path)
    assert_one_line_error(res, f"--v1 {path}: not a cgroup v1 directory")
    assert not os.path.exists(os.path.join(mirror.bpffs, "cgroup"))  # refused before any pass
