"""Fault injection: kill, stop and starve the Lava runtime during `verify` and `run`.

    .venv/bin/python benchmarks/faults.py [--trials 50] [--seed 0] [--timeout 20]

Each trial starts `cf2neuro verify ... --runner lava` or `cf2neuro run ...
--runner lava` on a small trained MLP, waits until the Lava runtime is up,
waits a random moment more and injects one fault:

- ``kill-worker``: SIGKILL one of Lava's process-model processes (a crash, the
  OOM killer);
- ``kill-runtime``: SIGKILL the runtime interpreter itself;
- ``stop-runtime``: SIGSTOP the runtime (a hang: only the watchdog can end it,
  so `--timeout` bounds it);
- ``starve-worker``: SIGSTOP one worker (the others wait for it forever);
- ``term-cli``: SIGTERM to cf2neuro (a scheduler or `timeout` ending the job).

Then it records how the command ended: a clear error (non-zero exit, one
line, no traceback) or exit 0 (the fault came after the work was done: then
its results must equal an unfaulted run's), the seconds from the fault to
the exit, leftovers (processes naming the Lava runtime, /dev/shm entries,
cf2neuro temp dirs) and results lost or corrupted (a failed command must
leave no results file; a successful one, correct results). It prints one
line per trial and a summary; the goal is 0 leftovers and 0 silent results.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from bad_inputs.checks import lava_processes, new_leftovers, snapshot  # noqa: E402  the tests'


FAULTS = ("kill-worker", "kill-runtime", "stop-runtime", "starve-worker", "term-cli")
CLI = [sys.executable, "-m", "cf2neuro"]


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(entry))
    return out


def _workers(runtime: int) -> list[int]:
    """Lava's process-model processes: forks of the runtime (its command line), not helpers
    such as multiprocessing's resource tracker."""
    out = []
    for pid in _children(runtime):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"cf2neuro_lava" in cmd and b"resource_tracker" not in cmd:
            out.append(pid)
    return out


def _runtime_of(cli_pid: int) -> int | None:
    """The Lava runtime interpreter started by the cf2neuro process `cli_pid`."""
    mine = set(_children(cli_pid))
    found = [p for p in lava_processes() if p in mine]
    return found[0] if found else None


def _setup(tmp: Path) -> dict:
    from cf2neuro.train import TrainConfig, train
    from cf2neuro.verify import test_inputs

    ckpt = tmp / "ckpt"
    train(TrainConfig(epochs=3), ckpt, progress=False)
    x, _ = test_inputs(ckpt)  # the whole test set: a few seconds of Lava
    np.savez(tmp / "x.npz", x=x.numpy())
    ref = tmp / "ref.npz"
    subprocess.run([*CLI, "run", str(ckpt), "--runner", "lava", "--inputs", str(tmp / "x.npz"),
                    "--out", str(ref)], check=True, capture_output=True)
    with np.load(ref) as d:
        ref_run = {k: d[k] for k in d.files}
    subprocess.run([*CLI, "verify", str(ckpt), "--target", "loihi2", "--data", "digits",
                    "--runner", "lava", "--report", str(tmp / "ref-verify")],
                   check=True, capture_output=True)
    ref_verify = json.loads((tmp / "ref-verify" / "verify.json").read_text())
    return {"ckpt": ckpt, "x": tmp / "x.npz", "run": ref_run, "verify": ref_verify}


def _command(kind: str, setup: dict, out: Path, timeout: float) -> list[str]:
    if kind == "run":
        return [*CLI, "run", str(setup["ckpt"]), "--runner", "lava", "--inputs",
                str(setup["x"]), "--out", str(out), "--timeout", str(timeout)]
    return [*CLI, "verify", str(setup["ckpt"]), "--target", "loihi2", "--data", "digits",
            "--runner", "lava", "--report", str(out), "--timeout", str(timeout)]


def _inject(fault: str, proc: subprocess.Popen, runtime: int) -> bool:
    """Send the fault; False when its victim was already gone (the run had ended)."""
    workers = _workers(runtime)
    if fault == "term-cli":
        victim, sig = proc.pid, signal.SIGTERM
    elif fault in ("kill-runtime", "stop-runtime"):
        victim, sig = runtime, signal.SIGKILL if fault == "kill-runtime" else signal.SIGSTOP
    else:
        if not workers:
            return False
        victim = random.choice(workers)
        sig = signal.SIGKILL if fault == "kill-worker" else signal.SIGSTOP
    try:
        os.kill(victim, sig)
        return True
    except ProcessLookupError:
        return False


def _results_ok(kind: str, out: Path, setup: dict) -> bool:
    """Exit 0: the results equal the unfaulted run's."""
    if kind == "run":
        with np.load(out) as d:
            return all(np.array_equal(d[k], v) for k, v in setup["run"].items())
    r, ref = json.loads((out / "verify.json").read_text()), setup["verify"]
    keys = ("exact_match", "quantized_accuracy", "runner_accuracy", "passed")
    return all(r[k] == ref[k] for k in keys)


def trial(i: int, fault: str, kind: str, setup: dict, tmp: Path, timeout: float) -> dict:
    out = tmp / (f"out-{i}.npz" if kind == "run" else f"report-{i}")
    before = snapshot()
    t_start = time.monotonic()
    proc = subprocess.Popen(_command(kind, setup, out, timeout), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    runtime = None
    while runtime is None and proc.poll() is None and time.monotonic() - t_start < 120:
        runtime = _runtime_of(proc.pid)
        time.sleep(0.05)
    injected, t_fault = False, None
    if runtime is not None:
        time.sleep(random.uniform(0.1, 2.5))  # somewhere in start-up, compile or the run
        t_fault = time.monotonic()
        injected = _inject(fault, proc, runtime)
    try:
        stdout, stderr = proc.communicate(timeout=timeout + 120)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        stderr += "\n(benchmark: the command hung and was killed)"
    t_end = time.monotonic()
    text = stdout + stderr
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    clear = proc.returncode != 0 and "Traceback" not in text and last.startswith("cf2neuro")
    left = new_leftovers(before)
    if proc.returncode == 0:
        lost = not _results_ok(kind, out, setup)
    else:
        lost = (out / "verify.json").exists() if kind == "verify" else out.exists()
    return {"trial": i, "fault": fault, "command": kind, "injected": injected,
            "exit": proc.returncode, "clear_error": clear,
            "notice_s": round(t_end - t_fault, 2) if t_fault else None,
            "leftovers": {k: sorted(v) for k, v in left.items()}, "lost_or_corrupt": lost,
            "message": last[:160]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=20.0,
                    help="the runner watchdog given to each command (bounds a hang)")
    ap.add_argument("--json", metavar="FILE", help="also write every trial as JSON")
    args = ap.parse_args()
    random.seed(args.seed)
    with tempfile.TemporaryDirectory(prefix="faults-") as tmp:
        tmp = Path(tmp)
        print("setting up (a 3-epoch MLP, unfaulted reference runs) ...", flush=True)
        setup = _setup(tmp)
        rows = []
        for i in range(args.trials):
            fault, kind = FAULTS[i % len(FAULTS)], random.choice(("verify", "run"))
            r = trial(i, fault, kind, setup, tmp, args.timeout)
            rows.append(r)
            print(f"{i:3d} {fault:<14}{kind:<7} exit {r['exit']:>4}  "
                  f"{'clear' if r['clear_error'] else ('ok' if r['exit'] == 0 else 'UNCLEAR')}"
                  f"  notice {r['notice_s']!s:>6} s  leftovers {len(r['leftovers'])}  "
                  f"lost {int(r['lost_or_corrupt'])}  {r['message']}", flush=True)
    failed = [r for r in rows if r["exit"] != 0]
    print("\nfault           trials  clear  exit0-correct  notice s (mean / max)")
    for fault in FAULTS:
        rs = [r for r in rows if r["fault"] == fault]
        ns = [r["notice_s"] for r in rs if r["notice_s"] is not None and r["exit"] != 0]
        print(f"{fault:<16}{len(rs):>6}{sum(r['clear_error'] for r in rs):>7}"
              f"{sum(r['exit'] == 0 and not r['lost_or_corrupt'] for r in rs):>15}"
              f"  {np.mean(ns) if ns else float('nan'):6.2f} / {max(ns, default=float('nan')):6.2f}")
    print(f"\n{len(rows)} faults: {len(failed)} ended in an error "
          f"({sum(r['clear_error'] for r in failed)} clear), "
          f"{sum(r['exit'] == 0 for r in rows)} finished first; "
          f"leftovers {sum(bool(r['leftovers']) for r in rows)}, "
          f"results lost or corrupted {sum(r['lost_or_corrupt'] for r in rows)}, "
          f"unclear errors {sum(not r['clear_error'] for r in failed)}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
