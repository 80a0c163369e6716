"""The text format: reference printer and parser (pure, no root)."""

from __future__ import annotations

import pytest

from bpffs_sync.histogram import ParseError, StatFile, bucket_bounds, format_log2_hist, format_stat, parse_stat

pytestmark = pytest.mark.unit

BCC_SAMPLE = (
    "     usecs               : count    distribution\n"
    "         0 -> 1          : 0        |                                        |\n"
    "         2 -> 3          : 4        |****************************************|\n"
    "         4 -> 7          : 1        |**********                              |\n"
)


def test_layout_matches_bcc() -> None:
    """Rows are print_log2_hist()'s: widths, arrows, 40-character bars."""
    assert format_log2_hist([0, 4, 1], "usecs") == BCC_SAMPLE


def test_empty_histogram_prints_nothing() -> None:
    """No samples, no header: like print_log2_hist()."""
    assert format_log2_hist([0] * 27, "usecs") == ""


def test_rows_stop_at_last_nonzero_slot() -> None:
    """Trailing zero slots are not printed."""
    out = format_log2_hist([1, 0, 0, 2, 0, 0], "usecs")
    assert out.count("\n") == 1 + 4


def test_bucket_bounds() -> None:
    """Slot 0 is 0 -> 1; slot i is 2^i -> 2^(i+1)-1."""
    assert bucket_bounds(0) == (0, 1)
    assert bucket_bounds(1) == (2, 3)
    assert bucket_bounds(26) == (1 << 26, (1 << 27) - 1)


def test_round_trip() -> None:
    """parse(format(x)) == x."""
    stat = StatFile({"cgroup_id": 7, "total_ns": 123, "slices": 5}, "usecs", [0, 2, 0, 3])
    assert parse_stat(format_stat(stat)) == stat


def test_garbage_is_rejected() -> None:
    """A line that is neither summary nor row raises ParseError."""
    with pytest.raises(ParseError):
        parse_stat("total_ns: many\n")
