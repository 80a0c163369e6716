"""libbpf's walk over link ids skips links that are not usable right now: gone (ENOENT) or answering
EAGAIN (a link whose id was freed by its release, which may still be running in a workqueue, or one
not yet settled by its creator). Any other error is raised. Pure logic: the kernel's answers are
given by a stand-in for link_fd_by_id()."""

from __future__ import annotations

import errno

import pytest

from bpffs_sync import libbpf
from bpffs_sync.errors import LibbpfError


def _answer(code: int) -> object:
    def fake(link_id: int) -> int:
        raise LibbpfError("bpf_link_get_fd_by_id", f"link id {link_id}", code)
    return fake


@pytest.mark.parametrize("code", [errno.ENOENT, errno.EAGAIN])
def test_a_link_going_away_is_skipped(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    monkeypatch.setattr(libbpf, "link_fd_by_id", _answer(code))
    assert libbpf._link_fd_if_alive(7) is None
    assert libbpf.detach_links([7, 8]) == 0


@pytest.mark.parametrize("code", [errno.EPERM, errno.EINVAL])
def test_other_errors_are_raised(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    monkeypatch.setattr(libbpf, "link_fd_by_id", _answer(code))
    with pytest.raises(LibbpfError) as exc:
        libbpf._link_fd_if_alive(7)
    assert exc.value.errno == code
