"""Faults of the machine, not of reglab: a full disk, a read-only folder, a damaged checkpoint.
Each ends in one line naming the file (exit 2), and what was finished before is intact.

The full-disk and read-only cases mount a small tmpfs, which needs root (as on the CI machine);
elsewhere they are skipped with the reason."""

import errno
import os
import subprocess
from contextlib import contextmanager

import pytest

from reglab._files import atomic_write
from reglab.errors import WriteError
from reglab.lab.cli import main

TINY = ["--dataset", "digits", "--epochs", "2", "--width", "16", "--quiet"]


@contextmanager
def tmpfs(path, size="600k", read_only=False):
    """A tmpfs of ``size`` mounted on ``path`` for the block; skips the test where it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the CI machine runs the tests as root)")
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def resize(path, size):
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def one_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reglab: error: "), err
    return err[0]


def test_a_failed_write_is_a_write_error_and_the_old_file_stays(tmp_path, monkeypatch):
    target = atomic_write(tmp_path / "summary.json", "old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match="cannot write .*summary.json: the disk is full"):
        atomic_write(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_written_files_have_the_mode_open_would_give(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = atomic_write(tmp_path / "r.toml", "x = 1")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # mkstemp's 0600 would hide results from others


def test_a_damaged_checkpoint_on_resume_is_one_line_and_left_alone(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    checkpoint = out / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # torn by something outside reglab
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["train", *TINY, "--out", str(out), "--resume"]) == 2
    line = one_line(capsys)
    assert "checkpoint.pt is damaged" in line and "delete checkpoint.pt to start it over" in line, line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.slow
def test_a_read_only_out_is_refused_before_training(tmp_path, capsys):
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        assert main(["train", *TINY, "--out", str(ro / "run")]) == 2
        assert "is not writable" in one_line(capsys)
        assert main(["study", "--arms", "baseline", "--seeds", "1", *TINY, "--out", str(ro / "s")]) == 2
        assert "is not writable" in one_line(capsys)


@pytest.mark.slow
def test_a_full_disk_during_train_is_one_line_then_resumes(tmp_path, capsys):
    with tmpfs(tmp_path / "disk", size="64k") as disk:  # the checkpoint (~100 kB) does not fit
        out = disk / "run"
        assert main(["train", *TINY, "--out", str(out)]) == 2
        line = one_line(capsys)
        assert "cannot write" in line and "checkpoint.pt: the disk is full" in line and "--resume" in line, line
        assert not list(out.glob(".*.tmp")), "a half-written temporary file was left behind"
        resize(disk, "20m")
        assert main(["train", *TINY, "--out", str(out), "--resume"]) == 0
        assert (out / "summary.json").exists()


@pytest.mark.slow
def test_a_full_disk_under_the_study_storage_is_one_line_and_nothing_is_lost(tmp_path, capsys):
    from reglab.lab.study.storage import StudyStore

    with tmpfs(tmp_path / "disk", size="1m") as disk:
        url = f"sqlite:///{disk / 'study.db'}"
        StudyStore(url, "regularization")  # the tables exist; then the disk fills up, but for 60 kB
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - 60_000))
        args = ["study", "--arms", "baseline,dropout,l2", "--seeds", "2", *TINY, "--storage", url,
                "--out", str(tmp_path / "s")]  # fmt: skip
        assert main(args) == 2
        line = one_line(capsys)
        assert "cannot write the study storage" in line and "run the same command again" in line, line
        stored = len(StudyStore(url, "regularization").completed())
        assert 0 < stored < 6
        (disk / "filler").unlink()
        assert main(args) == 0
        capsys.readouterr()
        trials = StudyStore(url, "regularization").completed()
        assert sorted(trials) == sorted((a, s) for a in ("baseline", "dropout", "l2") for s in (0, 1))


def test_a_run_folder_in_use_is_refused_saying_who_holds_it(tmp_path, capsys):
    from reglab._files import folder_lock

    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    with folder_lock(out):  # as a `reglab train --resume` training into it would hold it
        assert main(["train", *TINY, "--out", str(out), "--resume"]) == 2
        line = one_line(capsys)
        assert f"{out} is in use by another reglab (pid {os.getpid()} on" in line, line
    assert main(["train", *TINY, "--out", str(out), "--resume"]) == 0  # released: the second may go on


@pytest.mark.slow
def test_the_lock_of_a_killed_holder_is_free_again(tmp_path, capsys):
    import sys

    out = tmp_path / "run"
    out.mkdir()
    code = "import sys, time\nfrom reglab._files import folder_lock\nwith folder_lock(sys.argv[1]):\n"
    code += "    print('held', flush=True)\n    time.sleep(120)\n"
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["train", *TINY, "--out", str(out)]) == 2
        assert f"pid {holder.pid} on" in one_line(capsys)
    finally:
        holder.kill()  # kill -9: the system releases the lock with the process
        holder.wait()
    assert main(["train", *TINY, "--out", str(out)]) == 0
