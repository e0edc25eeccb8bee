"""The runtime's entry point (cf2neuro's lava runner starts it in a subprocess).

    python -m cf2neuro_lava run --graph G.nir --inputs IN.npz --out OUT.npz
                                [--probe NAME]... [--probe v:NAME]...
                                [--shm-log FILE] [--stats FILE.json]
                                [--progress FILE --chunks N] [--ready FILE]

IN.npz holds ``x``: int [T, B, *input_shape] (already integer, one sample
per batch entry). OUT.npz gets ``output`` and one array per probe, int64,
aligned with the input steps, ``v:NAME`` [B, ...] and ``latency``; it is
written atomically. ``--shm-log`` names a file that gets the name of every
shared-memory segment Lava creates, one a line, as it creates it (so a
client that kills the run can unlink them); ``--stats`` a JSON file of wall
times and counts; ``--chunks N --progress FILE`` split the run into N
``run()`` calls and append ``done total`` to FILE after each; ``--ready``
names a file written once Lava is imported and the graph read (the client
kills a runtime that hangs before).

Exit status: 0 success; 2 the graph or the inputs cannot be run (one line
``cf2neuro_lava: error: ...`` on stderr says why); 3 a Lava process model
failed or Lava hung while stopping (the traceback, then that line); 1 any
other error (a traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

EXIT_BAD_INPUT = 2


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"cf2neuro_lava: error: {message}", file=sys.stderr)
    return code


def _atomic_savez(path: Path, arrays: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_inputs(path: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data.files:
                raise ValueError(f"it has no array 'x' (it has {data.files})")
            x = data["x"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, AttributeError) as e:
        raise ValueError(f"inputs {path} are not an .npz with an integer array 'x' "
                         f"[T, B, *input_shape]: {e}") from None
    if x.dtype == bool or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"inputs 'x' in {path} must be integers (the caller applies the "
                         f"graph's input_scale), got dtype {x.dtype}")
    return x.astype(np.int64)


def read_graph(path: str):
    """`nir.read`, type-checked when NIR's own shape inference can state the graph.

    nir 1.0.8 infers a Conv2d's output from ``weight.shape[2]`` alone (as if
    every kernel were square), so a valid graph with a kh x kw kernel fails its
    type check; then the graph is read unchecked (the builder checks shapes).
    """
    import nir

    try:
        return nir.read(path)
    except ValueError as e:
        if "type" not in str(e).lower():
            raise
        print(f"cf2neuro_lava: note: NIR's type check rejects {path} ({e}); reading it "
              f"without (nir 1.0.8 infers Conv2d shapes as if kernels were square)",
              file=sys.stderr)
        return nir.read(path, type_check=False)


def cmd_run(args) -> int:
    from .build import GraphError
    from .run import Guard, run_graph

    out = Path(args.out)
    if not out.parent.is_dir():
        return _fail(f"output directory {out.parent} does not exist")
    try:
        x = _load_inputs(args.inputs)
    except ValueError as e:
        return _fail(str(e))
    try:
        graph = read_graph(args.graph)
    except Exception as e:  # h5py/nir raise many kinds for a bad file
        return _fail(f"{args.graph} is not a readable NIR file: {type(e).__name__}: {e}")
    guard = Guard(args.shm_log).install()
    if args.ready:  # up: Lava imported, the graph read (the client's start-up watchdog ends)
        Path(args.ready).write_text(f"{os.getpid()}\n")
    # recordings go beside the output: a run that is killed leaves them in the caller's directory
    record_dir = tempfile.mkdtemp(prefix=".recordings-", dir=out.parent)
    try:
        results, stats = run_graph(graph, x, args.probe, guard, record_dir=record_dir,
                                   progress=args.progress, chunks=args.chunks)
    except GraphError as e:
        return _fail(str(e))
    finally:
        shutil.rmtree(record_dir, ignore_errors=True)
    _atomic_savez(out, results)
    if args.stats:
        Path(args.stats).write_text(json.dumps(stats, indent=2) + "\n")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cf2neuro_lava",
                                     description="cf2neuro's isolated Lava runtime")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run a quantized NIR graph on integer inputs with Lava")
    p.add_argument("--graph", required=True, metavar="G.nir")
    p.add_argument("--inputs", required=True, metavar="IN.npz")
    p.add_argument("--out", required=True, metavar="OUT.npz")
    p.add_argument("--probe", action="append", default=[], metavar="NAME|v:NAME")
    p.add_argument("--shm-log", default=None, metavar="FILE")
    p.add_argument("--stats", default=None, metavar="FILE.json")
    p.add_argument("--progress", default=None, metavar="FILE",
                   help="append 'done total' (steps) after each run() chunk")
    p.add_argument("--ready", default=None, metavar="FILE",
                   help="write this file once Lava is imported and the graph read")
    p.add_argument("--chunks", type=int, default=1,
                   help="split the run into this many run() calls (for progress reports)")
    p.set_defaults(func=cmd_run)
    sub.add_parser("check", help="import Lava and the CF process (a health check)").set_defaults(
        func=cmd_check)
    args = parser.parse_args(argv)
    return args.func(args)


def cmd_check(args) -> int:
    import lava
    import nir

    from .procs.cf import models  # noqa: F401  (imports the CF process and its model)

    print(json.dumps({"python": sys.version.split()[0], "numpy": np.__version__,
                      "nir": getattr(nir, "__version__", "?"),
                      "lava": str(Path(lava.__path__[0]))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
