"""oncpu_weight, a knob (kernel-approach1 13/15, file writes): its file takes writes of a weight
that a second program, the sched_switch collector, acts on. One test per behaviour, against the
running patched kernel: the write changes what the collector charges; a malformed or out-of-range
write gets the program's error and keeps the value; the size limit; concurrent writers; who may
write (a delegated owner its own cgroups' knobs, nobody else); a link without the write flag;
`bpffs-sync knob set/get` end to end. Real cgroups, real bpffs; the fixtures undo everything.

Other users run in forked children (os.setresuid): the venv's interpreter lives under /root (0700),
which another user cannot execute, so nothing here execs Python as them; everything a child calls
is imported here first.
"""

from __future__ import annotations

import errno
import functools
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from conftest import CGROUP2
from series_fixtures import LoadedStats
from test_cgroup_stat import mirror_of

from bpffs_sync import cli as bpffs_cli
from bpffs_sync import libbpf, series
from bpffs_sync.backends import kernel_a1
from bpffs_sync.commands import knob as knob_cmd  # noqa: F401  (imported before any fork: see the docstring)
from bpffs_sync.paths import Layout
from bpffs_sync.programs import lookup

bpffs_cli.build_parser()  # what main() imports lazily (importlib.metadata's email parser), before any fork

NAME = "oncpu_weight"
NOBODY, OTHER = 65534, 65533  # a delegated subtree's owner, and a user owning nothing here
WORK = 1_000_000  # loop iterations of one CPU burner: the same work wherever it runs
EXE = os.path.join(os.path.dirname(sys.executable), "bpffs-sync")

pytestmark = pytest.mark.timeout(1800)  # a CLI `run` loads the programs: minutes under TCG


@pytest.fixture
def weight(mirror_fs: str, loaded_stats: LoadedStats) -> kernel_a1.KernelMirror:
    """oncpu_weight loaded once per session, its map and collector pinned in mirror_fs; its links
    are made with BPF_F_CGROUP_STAT_WRITE (kernel_a1.link_flags)."""
    km = loaded_stats.get(kernel_a1.KernelMirror, Layout(mirror_fs, CGROUP2), lookup(NAME))
    flag = series.uapi().write_flag
    assert flag is not None and km.flags == flag
    return km


@pytest.fixture
def knobs(weight: kernel_a1.KernelMirror, mirror_fs: str, cg: str, link_fds: list[int]) -> Callable[[str], str]:
    """A writable oncpu_weight link at cg; returns the path of a cgroup's knob (made if absent)."""
    link_fds.append(weight.attach(cg))

    def path(rel: str) -> str:
        os.makedirs(os.path.join(cg, rel), exist_ok=True)
        return os.path.join(mirror_of(mirror_fs, cg), rel, NAME)
    return path


def write(path: str, data: bytes) -> int:
    """open(O_WRONLY | O_TRUNC) and one write(2), as a shell's `echo x > path`: 0 or the errno."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except OSError as err:
        return err.errno or -1
    try:
        return 0 if os.write(fd, data) == len(data) else errno.EIO
    except OSError as err:
        return err.errno or -1
    finally:
        os.close(fd)


def fields(path: str) -> dict[str, int]:
    with open(path, encoding="ascii") as f:
        text = f.read()
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key] = int(value)
    return out


def as_user(uid: int, fn: Callable[[], int]) -> int:
    """fn() in a forked child running as uid:uid with no groups; what it returned (an errno, 0 ok)."""
    pid = os.fork()
    if pid == 0:
        code = 255
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            code = fn()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def mkdir_as(uid: int, path: str) -> int:
    """mkdir as uid: 0 or the errno."""
    def body() -> int:
        try:
            os.mkdir(path)
        except OSError as err:
            return err.errno or 1
        return 0
    return as_user(uid, body)


def burn(cgroup_dir: str, iterations: int = WORK) -> None:
    """A fixed amount of CPU work in a child moved into cgroup_dir (no clock: the same work anywhere).
    It sleeps before it moves: that switch charges its start-up to the cgroup it started in, where
    both the collector (per slice, at the switch) and cpu.stat (at each update) put it."""
    code = (f"import os, time\ntime.sleep(0.01)\n"
            f"open(os.path.join({cgroup_dir!r}, 'cgroup.procs'), 'w').write(str(os.getpid()))\n"
            f"x = 0\nfor i in range({iterations}):\n    x += i\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def usage_ns(cgroup_dir: str) -> int:
    """The kernel's own on-CPU time of the cgroup (cpu.stat usage_usec; there without the cpu controller)."""
    with open(os.path.join(cgroup_dir, "cpu.stat"), encoding="ascii") as f:
        for line in f:
            key, value = line.split()
            if key == "usage_usec":
                return int(value) * 1000
    raise AssertionError("no usage_usec in cpu.stat")


def delegate(cgroup_dir: str, uid: int) -> None:
    """Hand cgroup_dir to uid as cgroup delegation does: the directory and its writable interface files."""
    for entry in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
        os.chown(os.path.join(cgroup_dir, entry), uid, uid)


# --- what a write does -----------------------------------------------------------------------------


def test_read_shows_the_default_and_a_write_sets_it(knobs: Callable[[str], str], cg: str) -> None:
    """Unset: weight 100; `echo 200 > file` sets it, `echo -n 0` too; each cgroup has its own."""
    a, b = knobs("a"), knobs("b")
    assert fields(a) == {"cgroup_id": os.stat(os.path.join(cg, "a")).st_ino, "weight": 100, "weighted_ns": 0}
    res = subprocess.run(["sh", "-c", f"echo 200 > '{a}'"], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert fields(a)["weight"] == 200
    assert write(a, b"0") == 0
    assert fields(a)["weight"] == 0
    assert fields(b)["weight"] == 100


def test_weight_scales_what_the_collector_charges(knobs: Callable[[str], str], cg: str) -> None:
    """The same work in cgroups of weight 0, 100 (the default) and 200: 0 charges nothing, 200
    twice what 100 charges per ns on the CPU (cpu.stat's usage_usec as the yardstick)."""
    paths = {w: knobs(f"w{w}") for w in (0, 100, 200)}
    assert write(paths[0], b"0\n") == 0 and write(paths[200], b"200\n") == 0
    for w in paths:
        burn(os.path.join(cg, f"w{w}"))
    got = {w: fields(p)["weighted_ns"] for w, p in paths.items()}
    used = {w: usage_ns(os.path.join(cg, f"w{w}")) for w in paths}
    ratio = {w: got[w] / used[w] for w in paths}
    print(f"\nweighted_ns {got}, cpu.stat usage ns {used}, ratio {ratio}")
    assert min(used.values()) > 0
    assert got[0] == 0  # weight 0: nothing, however much it ran
    assert got[200] > got[100] > 0
    assert 0.5 < ratio[100] < 1.5, ratio  # the collector's on-CPU time is the kernel's, loosely
    assert 1.6 < ratio[200] / ratio[100] < 2.4, ratio


def test_a_write_changes_the_charge_from_then_on(knobs: Callable[[str], str], cg: str) -> None:
    """One cgroup: burn at 100, write 0 and burn (weighted_ns stays), write 200 and burn (it grows
    about twice its on-CPU time). Loose: a burner's last slice may be charged after the next write."""
    path, cgdir = knobs("x"), os.path.join(cg, "x")
    burn(cgdir)
    w1, u1 = fields(path)["weighted_ns"], usage_ns(cgdir)
    assert write(path, b"0") == 0
    burn(cgdir)
    w2, u2 = fields(path)["weighted_ns"], usage_ns(cgdir)
    assert write(path, b"200") == 0
    burn(cgdir)
    w3, u3 = fields(path)["weighted_ns"], usage_ns(cgdir)
    print(f"\nweight 100: +{w1} ns for {u1} ns on CPU; 0: +{w2 - w1} for {u2 - u1}; 200: +{w3 - w2} for {u3 - u2}")
    assert w1 > 0 and u2 > u1 and u3 > u2
    assert w2 - w1 < 0.1 * w1  # weight 0: no growth but the tail of the first burner's last slice
    assert 1.5 < ((w3 - w2) / (u3 - u2)) / (w1 / u1) < 2.5  # 200 charges twice what 100 did per ns


# --- what the program refuses ----------------------------------------------------------------------


@pytest.mark.parametrize(("data", "code"), [
    (b"abc", errno.EINVAL), (b"", 0), (b"\n", errno.EINVAL), (b" 5", errno.EINVAL),
    (b"5 ", errno.EINVAL), (b"5\n\n", errno.EINVAL), (b"+5", errno.EINVAL), (b"0x10", errno.EINVAL),
    (b"-0", errno.EINVAL), (b"5\x00", errno.EINVAL), (b"1001", errno.ERANGE), (b"-1", errno.ERANGE),
    (b"9" * 16, errno.ERANGE), (b"0" * 16 + b"5", errno.EINVAL), (b"9" * 40, errno.EINVAL),
], ids=lambda v: repr(v)[:12])
def test_a_bad_write_gets_the_programs_error_and_keeps_the_value(knobs: Callable[[str], str], data: bytes,
                                                                 code: int) -> None:
    """Each refused write fails with the program's errno; the weight stays. (0 bytes: the kernel
    returns 0 without running the program.)"""
    path = knobs("a")
    assert write(path, b"300") == 0
    assert write(path, data) == code
    assert fields(path)["weight"] == 300


def test_the_edges_of_the_range_are_taken(knobs: Callable[[str], str]) -> None:
    path = knobs("a")
    for data, want in ((b"1000\n", 1000), (b"0", 0), (b"007", 7), (b"0" * 15 + b"9", 9), (b"0" * 15 + b"\n", 0)):
        assert write(path, data) == 0, data
        assert fields(path)["weight"] == want


def test_more_than_256_bytes_is_e2big(knobs: Callable[[str], str]) -> None:
    """256 bytes reach the program (which takes at most 16: EINVAL); 257 are refused by the kernel
    (E2BIG); the value is kept."""
    path = knobs("a")
    assert write(path, b"5") == 0
    assert write(path, b"0" * 256) == errno.EINVAL
    assert write(path, b"0" * 256 + b"6") == errno.E2BIG
    assert fields(path)["weight"] == 5


def test_concurrent_writers(knobs: Callable[[str], str]) -> None:
    """8 processes x 200 writes, each process its own values, one reader beside them: no write
    fails, every read shows a value somebody wrote (or the default), and the value left is the
    last one of some writer (each writer's writes are in order)."""
    path = knobs("a")
    writers, writes = 8, 200
    values = [[p * 100 + i % 100 for i in range(writes)] for p in range(writers)]
    allowed = {100} | {v for vs in values for v in vs}

    def writer(vs: list[int]) -> int:
        fd = os.open(path, os.O_WRONLY)
        try:
            for v in vs:
                data = b"%d\n" % v
                if os.write(fd, data) != len(data):
                    return errno.EIO
        except OSError as err:
            return err.errno or 1
        finally:
            os.close(fd)
        return 0

    def reader() -> int:
        for _ in range(writes):
            if fields(path)["weight"] not in allowed:
                return 1
        return 0

    jobs: list[Callable[[], int]] = [functools.partial(writer, vs) for vs in values]
    pids = []
    for job in [*jobs, reader]:
        pid = os.fork()
        if pid == 0:
            code = 255
            try:
                code = job()
            finally:
                os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    assert codes == [0] * (writers + 1), codes
    assert fields(path)["weight"] in {vs[-1] for vs in values}


def test_a_removed_file_takes_no_more_writes(knobs: Callable[[str], str], cg: str) -> None:
    """An fd opened for writing before its cgroup went: ENODEV, as kernfs answers."""
    fd = os.open(knobs("gone"), os.O_WRONLY)
    try:
        os.rmdir(os.path.join(cg, "gone"))
        with pytest.raises(OSError) as err:
            os.write(fd, b"5")
        assert err.value.errno == errno.ENODEV
    finally:
        os.close(fd)


# --- who may write ----------------------------------------------------------------------------------


def test_delegated_owner_sets_its_cgroups_knobs_only(knobs: Callable[[str], str], cg: str) -> None:
    """cg/d is delegated to nobody, who makes cg/d/job: nobody may set job's knob (it owns job's
    parent), not d's (the delegation point's is the admin's); another user may set neither."""
    d = knobs("d")
    delegate(os.path.join(cg, "d"), NOBODY)
    assert mkdir_as(NOBODY, os.path.join(cg, "d", "job")) == 0
    job = os.path.join(os.path.dirname(d), "job", NAME)
    assert write(d, b"42") == 0  # root (CAP_SYS_ADMIN) may
    assert as_user(NOBODY, lambda: write(job, b"7")) == 0
    assert fields(job)["weight"] == 7
    assert as_user(NOBODY, lambda: write(d, b"8")) == errno.EACCES
    assert as_user(OTHER, lambda: write(job, b"9")) == errno.EACCES
    assert as_user(OTHER, lambda: 0 if fields(job)["weight"] == 7 else 1) == 0  # 0644: anyone reads
    assert (fields(job)["weight"], fields(d)["weight"]) == (7, 42)
    assert oct(os.stat(job).st_mode & 0o777) == "0o644"


def test_a_link_without_the_write_flag_refuses_writes(weight: kernel_a1.KernelMirror, mirror_fs: str, cg: str,
                                                     link_fds: list[int]) -> None:
    """The same program attached without BPF_F_CGROUP_STAT_WRITE: its files are 0444 and refuse
    every write, root's too (EPERM); reads work."""
    os.mkdir(os.path.join(cg, "a"))
    cg_fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)
    try:
        link_fds.append(libbpf.link_create_cgroup_stat(weight.stat.reader.fd(), cg_fd, "weight_ro"))
    finally:
        os.close(cg_fd)
    path = os.path.join(mirror_of(mirror_fs, cg), "a", "weight_ro")
    assert oct(os.stat(path).st_mode & 0o777) == "0o444"
    assert write(path, b"5") == errno.EPERM
    assert fields(path)["weight"] == 100
    desc = libbpf.cgroup_stat_link_info(link_fds[-1])
    assert desc is not None and desc.flags == 0


# --- the CLI -----------------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, check=False, timeout=900)


def cli_as(uid: int, *args: str) -> tuple[int, str, str]:
    """bpffs-sync's main() in a forked child running as uid: (exit code, stdout, stderr)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()

    def body() -> int:
        sys.stdout = io.TextIOWrapper(os.fdopen(out_w, "wb"), encoding="utf-8")
        sys.stderr = io.TextIOWrapper(os.fdopen(err_w, "wb"), encoding="utf-8")
        try:
            return bpffs_cli.main(list(args))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()

    code = as_user(uid, body)
    os.close(out_w)
    os.close(err_w)
    with os.fdopen(out_r) as o, os.fdopen(err_r) as e:
        return code, o.read(), e.read()


def one_line_error(stderr: str, *needles: str) -> bool:
    lines = stderr.strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("bpffs-sync: error: ") and all(n in lines[0] for n in needles)


def test_cli_run_attaches_a_writable_link_and_knob_sets_and_gets(plain_fs: str, cg: str) -> None:
    """`run --kernel --program oncpu_weight`, then `knob set/get` as root and as a delegated owner,
    each refusal one line with the kernel's errno; verify in sync; clean removes the files."""
    os.makedirs(os.path.join(cg, "a"))
    os.makedirs(os.path.join(cg, "d"))
    delegate(os.path.join(cg, "d"), NOBODY)
    res = cli("run", "--kernel", "--json", "--bpffs", plain_fs, "--cgroup-root", cg, "--program", NAME)
    assert res.returncode == 0, res.stderr
    assert [(o["stat"], o["action"]) for o in json.loads(res.stdout)["links"]] == [(NAME, "created")]
    assert [d.flags for d in libbpf.cgroup_stat_links()] == [series.uapi().write_flag]
    rel = os.path.relpath(cg, CGROUP2)

    res = cli("knob", "set", "--bpffs", plain_fs, f"{rel}/a", NAME, "250")
    assert (res.returncode, res.stdout.strip()) == (0, f"set {rel}/a {NAME}: 250"), res.stderr
    res = cli("knob", "get", "--json", "--bpffs", plain_fs, f"/{rel}/a", NAME)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["fields"]["weight"] == 250 and doc["fields"]["cgroup_id"] == os.stat(os.path.join(cg, "a")).st_ino
    for value, code in (("abc", errno.EINVAL), ("5000", errno.ERANGE), ("1" * 257, errno.E2BIG)):
        res = cli("knob", "set", "--bpffs", plain_fs, f"{rel}/a", NAME, value)
        assert res.returncode == 2 and one_line_error(res.stderr, f"errno {code}"), res.stderr
    res = cli("knob", "set", "--bpffs", plain_fs, f"{rel}/nothere", NAME, "1")
    assert res.returncode == 2 and one_line_error(res.stderr, "no such cgroup"), res.stderr

    assert mkdir_as(NOBODY, os.path.join(cg, "d", "job")) == 0
    code, out, err = cli_as(NOBODY, "knob", "set", "--bpffs", plain_fs, f"{rel}/d/job", NAME, "7")
    assert code == 0, err
    code, out, err = cli_as(NOBODY, "knob", "set", "--bpffs", plain_fs, f"{rel}/d", NAME, "7")
    assert code == 2 and one_line_error(err, f"errno {errno.EACCES}", "delegation point"), err
    code, out, err = cli_as(OTHER, "knob", "get", "--bpffs", plain_fs, f"{rel}/d/job", NAME)
    assert code == 0 and "weight: 7" in out, err

    res = cli("verify", "--kernel", "--json", "--bpffs", plain_fs)
    assert res.returncode == 0 and json.loads(res.stdout)["in_sync"], res.stdout + res.stderr
    res = cli("status", "--json", "--bpffs", plain_fs, "--cgroup-root", cg, "--program", NAME)
    assert [x["writable"] for x in json.loads(res.stdout)["kernel"]["links"]] == [True], res.stderr
    res = cli("clean", "--kernel", "--json", "--bpffs", plain_fs, "--cgroup-root", cg, "--program", NAME)
    assert res.returncode == 0, res.stderr
    res = cli("knob", "get", "--bpffs", plain_fs, f"{rel}/a", NAME)
    assert res.returncode == 2 and one_line_error(res.stderr, "errno 2"), res.stderr


def test_cli_user_space_refuses_the_knob(plain_fs: str, cg: str) -> None:
    """On the patched kernel too, the user-space mirror never serves a knob: one line, nothing made."""
    res = cli("run", "--once", "--user-space", "--bpffs", plain_fs, "--cgroup-root", cg, "--program", NAME)
    assert res.returncode == 2 and one_line_error(res.stderr, "a knob", "--kernel"), res.stderr
    assert not os.path.exists(os.path.join(plain_fs, "bpffs-sync", NAME))
