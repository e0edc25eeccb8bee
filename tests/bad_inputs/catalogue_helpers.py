"""In-process variants of conftest's checks, and ways to spoil a checkpoint copy.

`cli_refuses` runs `cf2neuro.cli.main` in this interpreter (fast), so a
traceback fails the test by itself; argparse's own refusals arrive as
SystemExit(2) after their one-line error, which counts as a refusal too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cf2neuro.cli import main as cli


def cli_refuses(capsys, argv, *words: str, code: int = 2) -> str:
    """Assert `cf2neuro ARGV` exits `code` with a one-line error naming `words`; stderr."""
    try:
        rc = cli([str(a) for a in argv])
    except SystemExit as e:  # argparse: usage, then "cf2neuro CMD: error: ..."
        rc = e.code
    err = capsys.readouterr().err
    assert rc == code, f"exit {rc}, wanted {code}:\n{err[-3000:]}"
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("cf2neuro"), f"no one-line error:\n{err}"
    for w in words:
        assert w.lower() in err.lower(), f"{w!r} not in the message:\n{err}"
    return err


def spoiled(ckpt: Path, dest: Path, config=None, weights=None, raw_config: str | None = None
            ) -> Path:
    """A copy of checkpoint `ckpt` in `dest`, with config.json and/or the weights changed.

    `config(dict) -> object` rewrites config.json; `weights(dict) -> dict` the
    tensors (the SHA-256 in config.json is dropped so the loader reads them).
    """
    shutil.copytree(ckpt, dest)
    cfg_path = dest / "config.json"
    if weights is not None:
        from safetensors.torch import load_file, save_file

        tensors = weights(load_file(str(dest / "model.safetensors")))
        save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
        cfg = json.loads(cfg_path.read_text())
        cfg.pop("weights_sha256", None)
        cfg_path.write_text(json.dumps(cfg))
    if config is not None:
        cfg_path.write_text(json.dumps(config(json.loads(cfg_path.read_text()))))
    if raw_config is not None:
        cfg_path.write_text(raw_config)
    return dest
