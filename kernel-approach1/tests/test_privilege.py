"""Who may make a cgroup stat link, and what its program may do in a reader's context."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
import rawbpf

from bpffs_sync.backends import kernel_a1


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


LINK_UPDATE = """
import ctypes, sys
lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
rc = lib.bpf_link_update(int(sys.argv[1]), int(sys.argv[2]), None)
print(-rc if rc < 0 else 0)
"""


def test_link_update_needs_the_capability_link_create_needs(stat: kernel_a1.KernelMirror, cg: str,
                                                            link_fds: list[int]) -> None:
    """BPF_LINK_UPDATE swaps the program every reader of the link's files runs, so it is gated
    like link create (CAP_SYS_ADMIN in the initial user namespace): a process holding the link's
    fd and a program fd but without CAP_SYS_ADMIN (dropped from its bounding set, still uid 0
    with CAP_BPF and CAP_PERFMON) gets EPERM; with it, the update succeeds. v2 let any holder of
    the fd replace the program."""
    link_fds.append(stat.attach(cg))
    prog_fd = stat.stat.reader.fd()
    drop = ["setpriv", "--inh-caps=-sys_admin", "--bounding-set=-sys_admin"]
    for prefix, want in ((drop, errno.EPERM), ([], 0)):
        res = subprocess.run([*prefix, sys.executable, "-c", LINK_UPDATE, str(link_fds[0]), str(prog_fd)],
                             pass_fds=(link_fds[0], prog_fd), capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stderr
        assert int(res.stdout) == want, (prefix, res.stdout, res.stderr)
