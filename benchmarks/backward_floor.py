"""How close is cf2neuro's compiled CF backward to what this CPU can do?

Side by side at the neuron-speed shape (4 x 1 M neuron-steps, 2 threads):
cf2neuro's torch.compile'd backward kernel, a hand-written C backward of the
same math (benchmarks/cf_backward.c, built here with the system compiler,
-O3 -march=native, AVX-512 where the CPU has it), and the memory floor. Each
for the CF neuron (signed, learnable α_t) and for the LIF neuron (unsigned,
fixed α: the work SpikingJelly's backward does). Every run writes a fresh
gradient buffer, as training does; the floor is also timed into a reused one.
The C kernel is checked against cf2neuro's before it is timed.

    .venv/bin/python benchmarks/backward_floor.py [--reps 40]
"""

import argparse
import ctypes
import os
import pathlib
import shutil
import subprocess
import tempfile

import torch

from cf2neuro.nn import functional as cff
from neuron_speed import interleaved

T, N = 4, 1 << 20
BETA, THETA = 0.5, 1.0
SOURCE = pathlib.Path(__file__).with_name("cf_backward.c")


def build(signed: bool, need_alpha: bool, workdir: str):
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        raise SystemExit("no C compiler found (set CC); this benchmark builds benchmarks/cf_backward.c")
    lib = os.path.join(workdir, f"cf_backward_{int(signed)}{int(need_alpha)}.so")
    # -fno-trapping-math lets gcc vectorize truncf/floorf; no -ffast-math, so
    # the recomputed membrane is the forward's, bit for bit.
    subprocess.run([cc, "-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math",
                    "-ffp-contract=off", "-fopenmp", "-fPIC", "-shared",
                    f"-DSIGNED={int(signed)}", f"-DNEED_ALPHA={int(need_alpha)}",
                    str(SOURCE), "-o", lib, "-lm"], check=True)
    fn = ctypes.CDLL(lib).cf_backward
    p = ctypes.c_void_p
    fn.argtypes = [p, p, p, p, ctypes.c_float, ctypes.c_float, ctypes.c_int64, ctypes.c_int64,
                   p, p, ctypes.c_int]
    return fn


def c_backward(fn, x, spikes, gout, alpha):
    def run():
        gx = torch.empty_like(x)
        galpha = torch.zeros(T, dtype=torch.float64)
        fn(x.data_ptr(), spikes.data_ptr(), gout.data_ptr(), alpha.data_ptr(), THETA, BETA,
           T, N, gx.data_ptr(), galpha.data_ptr(), torch.get_num_threads())
        return gx, galpha

    return run


def cf2neuro_backward(x, gout, alpha, signed: bool, need_alpha: bool):
    theta = torch.tensor(THETA)

    def run():
        gx, galpha, _ = cff._run("backward", (x, gout, alpha, theta, None, None), beta=BETA,
                                 hi=1, signed=signed, detach_reset=True, shape="sigmoid",
                                 need_alpha=need_alpha, need_theta=False)
        return gx, galpha

    return run


def check(ours, theirs, name):
    (gx, ga), (cx, ca) = ours(), theirs()
    err = ((gx - cx).abs().max() / gx.abs().max()).item()
    if ga is not None:
        err = max(err, ((ga.double() - ca).abs().max() / ga.abs().max()).item())
    if err > 1e-4:
        raise SystemExit(f"{name}: the C kernel disagrees with cf2neuro's (max rel error {err:.1e})")
    return err


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    cff.compile_kernels(True)
    x, gout = torch.randn(T, N) * 2, torch.randn(T, N)
    alpha = torch.tensor([2.0, 3.0, 4.0, 5.0])
    floor_out = torch.empty_like(x)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, signed, need_alpha in (("CF (signed, learnable α)", True, True),
                                         ("LIF (unsigned, fixed α)", False, False)):
            spikes = cff._run("forward", (x, torch.tensor(THETA)), beta=BETA, hi=1,
                              signed=signed, record=False)[0]
            ours = cf2neuro_backward(x, gout, alpha, signed, need_alpha)
            theirs = c_backward(build(signed, need_alpha, tmp), x, spikes, gout, alpha)
            err = check(ours, theirs, name)
            print(f"{name}: C kernel agrees with cf2neuro's to {err:.1e} (max rel)")
            runs[f"{name}, cf2neuro compiled"] = ours
            runs[f"{name}, hand-written C"] = theirs
        runs["memory floor (x + gout), fresh output"] = lambda: torch.add(x, gout)
        runs["memory floor (x + gout), reused output"] = lambda: torch.add(x, gout, out=floor_out)
        rows = interleaved(runs, args.reps)
    print(f"\nbackward of one layer, {T} x {N} neuron-steps, cpu, 2 threads, torch {torch.__version__}")
    width = max(map(len, rows))
    for name, ms in rows.items():
        print(f"{name:<{width}}  {ms:6.2f} ms")
    cf, lif = "CF (signed, learnable α)", "LIF (unsigned, fixed α)"
    print(f"\ncf2neuro / hand-written C, CF : {rows[f'{cf}, cf2neuro compiled'] / rows[f'{cf}, hand-written C']:4.2f}")
    print(f"cf2neuro / hand-written C, LIF: {rows[f'{lif}, cf2neuro compiled'] / rows[f'{lif}, hand-written C']:4.2f}")
    print(f"CF / LIF work, hand-written C : {rows[f'{cf}, hand-written C'] / rows[f'{lif}, hand-written C']:4.2f}")


if __name__ == "__main__":
    main()
