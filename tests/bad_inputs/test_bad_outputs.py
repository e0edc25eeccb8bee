"""Outputs: checked before any work, written whole, with the user's umask, one writer at a time."""

import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from .checks import cf2neuro, nothing_partial, refused

from cf2neuro.cli import main as cli
from cf2neuro.fileio import atomic_path, locked_dir

UNWRITABLE = Path("/proc/cf2neuro-no")  # no one can make a directory here, root included


def _a_file(tmp_path) -> Path:
    f = tmp_path / "a-file"
    f.write_text("not a directory\n")
    return f


@pytest.mark.parametrize("where", ["unwritable", "under-a-file", "is-a-file"])
def test_every_subcommand_refuses_an_output_it_cannot_write_before_any_work(
        where, mlp_ckpt, tmp_path, capsys):
    base = {"unwritable": UNWRITABLE, "under-a-file": _a_file(tmp_path) / "sub",
            "is-a-file": _a_file(tmp_path)}[where]
    np.savez(tmp_path / "x.npz", x=np.zeros((4, 2, 1, 8, 8), np.float32))
    cases = {
        "train": ["train", "--epochs", "1", "--out", base, "--quiet"],
        "verify": ["verify", mlp_ckpt, "--target", "loihi2", "--data", "digits", "--runner",
                   "emulator", "--report", base],
        "energy": ["energy", mlp_ckpt, "--data", "digits", "--report", base, "--quiet"],
        "demo": ["demo", "--out", base, "--quiet"],
        "export": ["export", mlp_ckpt, "--out", f"{base}.nir" if where == "is-a-file"
                   else base / "m.nir"],
        "run": ["run", mlp_ckpt, "--inputs", tmp_path / "x.npz", "--out",
                f"{base}.npz" if where == "is-a-file" else base / "r.npz"],
    }
    if where == "is-a-file":  # a file where a directory is needed
        cases["export"][-1] = tmp_path
        cases["run"][-1] = tmp_path
    for name, argv in cases.items():
        t0 = time.perf_counter()
        assert cli([str(a) for a in argv]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(f"cf2neuro {name}: error:") and len(err.splitlines()) == 1, err
        assert str(argv[-1] if name in ("export", "run") else base) in err, err
        assert time.perf_counter() - t0 < 5, f"{name} worked before refusing"
    assert not (tmp_path / "a-file" / "sub").exists()


def test_a_refusal_through_the_shell_is_one_line_without_traceback(tmp_path):
    refused(cf2neuro("train", "--epochs", "1", "--out", UNWRITABLE / "ck", "--quiet"),
            "cannot write in /proc", "choose a directory")


def test_a_second_writer_of_a_checkpoint_is_refused_naming_the_first(tmp_path, capsys):
    out = tmp_path / "ck"
    with locked_dir(out, "checkpoint directory"):  # another run holds it
        assert cli(["train", "--epochs", "1", "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"pid {os.getpid()}" in err and "wait for it" in err
    nothing_partial(out / "model.safetensors", out / "config.json")
    assert cli(["train", "--epochs", "1", "--out", str(out), "--quiet"]) == 0  # free again


def test_a_failed_run_leaves_no_directory_it_made(tmp_path, capsys):
    out = tmp_path / "new" / "ck"
    assert cli(["train", "--epochs", "1", "--out", str(out), "--data", "no-such-data",
                "--quiet"]) == 2
    assert not out.exists()


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_outputs_get_the_users_umask(mask, tmp_path):
    old = os.umask(mask)
    try:
        assert cli(["train", "--epochs", "1", "--out", str(tmp_path / "ck"), "--quiet"]) == 0
    finally:
        os.umask(old)
    for f in (tmp_path / "ck").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask, f


def test_an_interrupted_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
