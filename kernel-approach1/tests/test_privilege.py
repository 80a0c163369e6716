"""Who may make a cgroup stat link, and what its program may do in a reader's context."""

from __future__ import annotations

import errno
import os

import pytest
import rawbpf


def test_plain_helper_loads() -> None:
    """A cgroup stat program calling an ordinary helper loads (the control of the next test)."""
    fd, _log = rawbpf.prog_load_cgroup_stat(rawbpf.call_helper_prog(rawbpf.BPF_FUNC_get_smp_processor_id))
    os.close(fd)


@pytest.mark.parametrize(
    "helper",
    [rawbpf.BPF_FUNC_send_signal, rawbpf.BPF_FUNC_send_signal_thread, rawbpf.BPF_FUNC_probe_write_user],
    ids=["send_signal", "send_signal_thread", "probe_write_user"],
)
def test_helper_acting_on_the_reader_is_refused(helper: int) -> None:
    """A program that would signal the reading task or write its memory fails to load."""
    with pytest.raises(OSError) as err:
        fd, _log = rawbpf.prog_load_cgroup_stat(rawbpf.call_helper_prog(helper, arg1=9))
        os.close(fd)
    assert err.value.errno == errno.EINVAL
    assert "cannot use helper" in str(err.value)


def test_token_holder_in_user_namespace_cannot_link(cg: str) -> None:
    """A BPF token holder in a user namespace loads a cgroup stat program but may not link it (EPERM)."""
    cgroup_fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)

    def body(token_fd: int) -> int:
        prog_fd, _log = rawbpf.prog_load_cgroup_stat(
            rawbpf.call_helper_prog(rawbpf.BPF_FUNC_get_smp_processor_id), token_fd
        )
        try:
            link_fd = rawbpf.link_create_cgroup_stat(prog_fd, cgroup_fd)
        except OSError as err:
            return err.errno or -1
        os.close(link_fd)
        return 0

    try:
        assert rawbpf.in_userns_with_token(body) == errno.EPERM
    finally:
        os.close(cgroup_fd)
