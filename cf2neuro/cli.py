"""The `cf2neuro` command line (DESIGN §8). Each subcommand calls one API function.

Exit codes: 0 success, 1 a failed check, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from .errors import Cf2NeuroError
from .signals import exit_status, stop_on_signals


def _key_value(text: str) -> tuple[str, object]:
    """'beta=0.5' -> ('beta', 0.5); values are JSON where they parse, else strings."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


# Option converters: argparse turns their ArgumentTypeError into one line and exit 2,
# before any work (the API functions check the same values for Python callers).
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def _number(text: str, low: float = 0.0, strict: bool = True) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < low or (strict and value == low):
        raise argparse.ArgumentTypeError(
            f"must be a finite number {'>' if strict else '>='} {low:g}, got {text!r}")
    return value


def _positive(text: str) -> float:
    return _number(text)


def _non_negative(text: str) -> float:
    return _number(text, strict=False)


def _cmd_train(args) -> int:
    from .train import TrainConfig, train

    cfg = TrainConfig(model=args.model, data=args.data, epochs=args.epochs,
                      timesteps=args.timesteps, batch_size=args.batch_size, lr=args.lr,
                      seed=args.seed, loss=args.loss, pn_lambda=args.pn_lambda,
                      encoding=args.encoding, augment=not args.no_augment,
                      neuron=dict(args.neuron), model_options=dict(args.model_option),
                      data_options=dict(args.data_option),
                      data_root=args.data_root, device=args.device, amp=not args.no_amp,
                      compile=args.compile, target=args.target)
    metrics = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    if metrics:  # only rank 0 of a distributed run reports
        print(f"test accuracy {metrics['test_accuracy']:.4f} after {metrics['epochs']} epochs "
              f"({metrics['train_seconds']:.1f} s); checkpoint in {args.out}")
    return 0


def _data_overrides(args) -> dict:
    """verify/energy: what replaces the checkpoint's own encoding, data root and options."""
    return {"encoding": args.encoding, "data_root": args.data_root,
            "data_options": dict(args.data_option) if args.data_option else None}


def _add_data_overrides(p) -> None:
    p.add_argument("--encoding", choices=["direct", "poisson"], default=None,
                   help="override the checkpoint's input encoding")
    p.add_argument("--data-root", default=None, help="override where the data set lives")
    p.add_argument("--data-option", type=_key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="override a data set option (repeatable)")


def _add_from(p, dt: bool = True) -> None:
    from .nir.peers import PEERS

    p.add_argument("--from", dest="peer", default=None, choices=PEERS, metavar="PEER",
                   help=f"read a NIR file as this framework ran it ({', '.join(PEERS)}): its "
                        f"own conventions, e.g. Sinabs's multi-spike IAF as a CF neuron")
    if dt:
        p.add_argument("--dt", type=_positive, default=None, metavar="SECONDS",
                       help="a NIR file's step when the file states none (LIF/LI/CubaLIF)")


def _cmd_compare(args) -> int:
    from .compare import compare
    from .fileio import check_output_dir
    from .report import CompareRecord, format_joules, format_percent, write_report

    check_output_dir(args.report, "--report")  # before any work
    r = compare(args.checkpoint, data=args.data, targets=args.target, limit=args.limit,
                timeout=args.timeout, data_overrides=_data_overrides(args))
    write_report(CompareRecord.from_json(r), Path(args.report))
    for name, t in r["targets"].items():
        if not t["deployable"]:
            print(f"{name}: cannot hold it: {t['reason']}")
            continue
        energy = (f", {format_joules(t['joules_per_inference'])}/inference"
                  if "joules_per_inference" in t else "")
        print(f"{name} via {t['runner']}: {format_percent(t['target_accuracy'])} (float "
              f"{format_percent(t['float_accuracy'])}), exact match "
              f"{format_percent(t['exact_match'])} vs {t['runner_equals']}, latency "
              f"{t['latency_steps']} steps{energy}")
    print(f"report: {args.report}/compare.html (also compare.md, compare.json)")
    return 0


def _cmd_export(args) -> int:
    from .api import export

    s = export(args.checkpoint, args.out, strict=args.strict, dt=args.dt, target=args.target,
               fmt=args.format, probes=args.probe, timesteps=args.timesteps, peer=args.peer)
    what = f" quantized for {s['target']}" if s["target"] else ""
    if s["format"] == "nir" and s["for"] != "nir":
        print(f"wrote {s['path']}{what} for {s['for']}: {s['nodes']} NIR nodes, "
              f"{s['edges']} edges, dt = {s['dt']:g} s; {s['for']}'s own importer runs it "
              f"as cf2neuro does")
    elif s["format"] == "nir":
        print(f"wrote {s['path']}{what}: {s['nodes']} NIR nodes, {s['edges']} edges, "
              f"dt = {s['dt']:g} s, {len(s['cf_layers'])} CF layers as NIR LIF/IF with "
              f"cf2neuro metadata")
    else:
        print(f"wrote {s['path']}{what}: " + ", ".join(
            f"{k} {v}" for k, v in s.items() if k not in ("path", "format", "target")))
    return 0


def _cmd_run(args) -> int:
    from .api import run

    res = run(args.source, runner=args.runner, inputs=args.inputs, dt=args.dt,
              probes=args.probe, out=args.out, target=args.target, device=args.device,
              timeout=args.timeout, peer=args.peer)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in res.items()
                                            if k != "latency")
          + f"; latency removed: {int(res['latency'])} steps")
    return 0


def _cmd_verify(args) -> int:
    from .fileio import check_output_dir
    from .verify import verify

    check_output_dir(args.report, "--report")  # before any work

    r = verify(args.checkpoint, target=args.target, data=args.data, runner=args.runner,
               limit=args.limit, max_drop=args.max_drop, report_dir=args.report,
               timeout=args.timeout, device=args.device, data_overrides=_data_overrides(args),
               workers=args.workers, peer=args.peer, dt=args.dt)
    if r is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    from .report import format_percent, format_pp

    worst = min(r["exact_match"].values()) if r["exact_match"] else None
    if r.get("quantized", True):
        print(f"{r['target']} via {r['runner']}, {r['samples']} samples: float "
              f"{format_percent(r['float_accuracy'])}, quantized "
              f"{format_percent(r['quantized_accuracy'])} (drop {format_pp(r['accuracy_drop_pp'])})"
              f", runner {format_percent(r['runner_accuracy'])}, argmax agreement "
              f"{format_percent(r['argmax_agreement'])}, exact match {format_percent(worst)} "
              f"(worst probe)")
    else:  # a float target: nothing is quantized, the runner is held to the reference
        agree = r.get("spike_agreement") or {}
        print(f"{r['target']} via {r['runner']}, {r['samples']} samples (float, no "
              f"quantization): float {format_percent(r['float_accuracy'])}, runner "
              f"{format_percent(r['runner_accuracy'])}, argmax agreement "
              f"{format_percent(r['runner_argmax_agreement'])}, spike agreement "
              f"{format_percent(min(agree.values()) if agree else None)} (worst probe), "
              f"{len(r.get('flips') or [])} flipped spikes listed")
    print(f"report: {args.report}/verify.html (also verify.md, verify.json) -> "
          f"{'passed' if r['passed'] else 'FAILED'}")
    return 0 if r["passed"] else 1


def _cmd_energy(args) -> int:
    from .energy import energy_report, write_energy_report
    from .fileio import check_output_dir

    check_output_dir(args.report, "--report")  # before any work

    report = energy_report(args.checkpoint, targets=args.target, data=args.data,
                           limit=args.limit, progress=not args.quiet,
                           data_overrides=_data_overrides(args), peer=args.peer, dt=args.dt,
                           simulator=args.simulator)
    write_energy_report(report, Path(args.report))
    from .report import format_joules

    for name, t in report["targets"].items():
        notes = [] if t.get("measured", True) else ["assumed per-op energies"]
        if not t.get("deployable", True):
            notes.append("not deployable as is: counted on a fallback quantization")
        print(f"{name:<8} {format_joules(t['total_joules_per_inference']):>10} per inference"
              + (f"   ({'; '.join(notes)})" if notes else ""))
    for name, why in (report.get("refused") or {}).items():
        print(f"{name:<8} {'refused':>10}: {why.splitlines()[0]}")
    if args.simulator:
        print(f"\n{args.simulator} (simulated on the same samples; energy.json: "
              f"targets.NAME.{args.simulator}):")
        for name, t in report["targets"].items():
            s = t[args.simulator]
            print(f"{name:<8} {args.simulator} refused: {s['refused'].splitlines()[0]}"
                  if "refused" in s else s["summary"])
    print(f"report: {args.report}/energy.html (also energy.md, energy.json, energy.png)")
    return 0


def _cmd_runtime(args) -> int:
    from .runners import get_runner, runner_names
    from .targets import known_targets, load_target

    name = args.name
    if name not in runner_names() and name in known_targets():  # a target: its default runner
        name = load_target(name).runner
    print(get_runner(name).setup(progress=True))
    return 0


def _cmd_targets(args) -> int:
    from .api import targets

    rows = targets()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for t in rows:
        fmt = t["numeric"]
        numeric = ("float (no fixed point)" if fmt is None else
                   f"{fmt['weight_bits']}-bit weights (exp {fmt['weight_exp_min']}.."
                   f"{fmt['weight_exp_max']}), {fmt['state_bits']}-bit state, "
                   f"{'graded ' if fmt['graded_spikes'] else 'binary '}"
                   f"{'signed ' if fmt['signed_spikes'] else ''}spikes")
        limits = ", ".join(f"{k} {v if v is not None else '?'}" for k, v in t["limits"].items())
        print(f"{t['name']}: {t['description']}")
        print(f"  back end  {t['backend'] or '(float reference)'}")
        print(f"  numerics  {numeric}")
        print(f"  limits    {limits or 'none stated'}")
        for name, r in t["runners"].items():
            state = "available" if r["available"] else "NOT available"
            note = f" ({r['note']})" if r["note"] else ""
            print(f"  runner    {name}{' [default]' if r['default'] else ''}: {state}{note}")
    return 0


def _cmd_demo(args) -> int:
    from pathlib import Path

    from .demo import run_demo
    from .report import format_joules, format_percent, format_pp

    summary = run_demo(args.out, seed=args.seed, progress=not args.quiet)
    print(f"digits CF-MLP (T={summary['timesteps']}): test accuracy "
          f"{summary['test_accuracy']:.4f}, trained in {summary['train_seconds']:.1f} s")
    print(f"NIR: exported {summary['nir']}, re-imported: "
          f"{format_percent(summary['nir_agreement'])} of test predictions equal the PyTorch "
          f"model's (accuracy {summary['nir_accuracy']:.4f})")
    v = summary["verify"]
    worst = min(v["exact_match"].values()) if v["exact_match"] else None
    print(f"\nLoihi 2 fixed point, {v['samples']} test samples ({v['runner']} runner, pipeline "
          f"latency {v['latency_steps']} steps removed):")
    print(f"  {'float (PyTorch)':<24}{format_percent(v['float_accuracy']):>9}")
    print(f"  {'quantized (emulator)':<24}{format_percent(v['quantized_accuracy']):>9}   drop "
          f"{format_pp(v['accuracy_drop_pp'])}, argmax agreement "
          f"{format_percent(v['argmax_agreement'])}")
    print(f"  {v['runner'] + ' runner':<24}{format_percent(v['runner_accuracy']):>9}   "
          f"exact match with the emulator: {format_percent(worst)} "
          f"(all {len(v['exact_match'])} probes)")
    if "lava_missing" in v:
        print(f"  Lava not run: {v['lava_missing']}")
    e = summary["energy"]
    if e["available"]:
        print("\nEstimated energy per inference (measured operation counts x per-op energies; "
              "see the report's assumptions):")
        for name, t in e["targets"].items():
            print(f"  {name:<24}{format_joules(t['joules_per_inference']):>12}")
        if e.get("snn_vs_ann_cmos45") is not None:
            print(f"  SNN / ANN on cmos45: {e['snn_vs_ann_cmos45']:.3g}")
    else:
        print(f"\nNo energy estimate: {e['missing']}")
    print(f"\ncheckpoint: {summary['checkpoint']}; summary: {args.out}/demo.json")
    print(f"report: {summary['report']} (also report.md, report.json and the plots in "
          f"{Path(summary['report']).parent}); done in {summary['total_seconds']:.1f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .train import TrainConfig

    d = TrainConfig()
    parser = argparse.ArgumentParser(prog="cf2neuro", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a CF network and write a checkpoint")
    p.add_argument("--model", default=d.model)
    p.add_argument("--data", default=d.data)
    p.add_argument("--epochs", type=_positive_int, default=d.epochs)
    p.add_argument("--timesteps", type=_positive_int, default=d.timesteps)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", required=True, help="checkpoint directory")
    p.add_argument("--batch-size", type=_positive_int, default=d.batch_size)
    p.add_argument("--lr", type=_positive, default=d.lr,
                   help="Adam's starting rate (default: the model's own, 1e-2 small, 1e-3 deep)")
    p.add_argument("--loss", choices=["ce", "tet"], default=d.loss)
    p.add_argument("--pn-lambda", type=_non_negative, default=d.pn_lambda,
                   help="weight of the positive-negative balanced loss (0 = off)")
    p.add_argument("--encoding", choices=["direct", "poisson"], default=d.encoding)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--neuron", type=_key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="CF neuron option, e.g. max_spikes=4 (repeatable)")
    p.add_argument("--model-option", type=_key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="architecture option, e.g. hidden=[512,512]")
    p.add_argument("--data-option", type=_key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="data set option, e.g. frames=16 (repeatable)")
    p.add_argument("--data-root", default=None, help="where on-disk data sets live")
    p.add_argument("--device", default=d.device)
    p.add_argument("--no-amp", action="store_true", help="no float16 autocast on CUDA")
    p.add_argument("--compile", choices=["auto", "on", "off"], default=d.compile)
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--target", default=None, metavar="NAME",
                   help="refuse before training a model this target cannot run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("export", help="write a checkpoint as NIR (.nir) or ONNX (.onnx)")
    p.add_argument("checkpoint", metavar="CKPT_DIR")
    p.add_argument("--out", required=True, metavar="FILE.nir|FILE.onnx")
    p.add_argument("--format", default=None, choices=["nir", "onnx"],
                   help="the file format (default: from the suffix of --out)")
    p.add_argument("--target", default=None, metavar="NAME",
                   help="quantize for this fixed-point target first (its integer form)")
    p.add_argument("--probe", action="append", default=[], metavar="NAME",
                   help="ONNX: also output this node's trace ('v:NAME' a membrane; repeatable)")
    p.add_argument("--timesteps", type=int, default=None, metavar="T",
                   help="ONNX: the time steps the file unrolls (default: the checkpoint's)")
    p.add_argument("--strict", action="store_true",
                   help="refuse what NIR cannot state on its own (CF: graded/signed spikes, "
                        "reset by subtraction)")
    p.add_argument("--dt", type=_positive, default=None, metavar="SECONDS",
                   help="seconds per step written into the graph (default 1e-4, snnTorch's)")
    from .nir.peers import WRITERS

    p.add_argument("--for", dest="peer", default=None, choices=("nir",) + WRITERS,
                   metavar="PEER",
                   help=f"NIR that this framework's own importer runs exactly as cf2neuro does "
                        f"({', '.join(WRITERS)}), or refuse with the reason; 'nir' (default): "
                        f"NIR as specified, with a warning of what a reader loses")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("run", help="run a checkpoint, a NIR or an ONNX file on inputs")
    p.add_argument("source", metavar="CKPT_DIR|FILE.nir|FILE.onnx")
    p.add_argument("--runner", default="reference",
                   help="reference, emulator, lava, onnxruntime, nengo-loihi, xylosim "
                        "(cf2neuro targets lists them)")
    p.add_argument("--timeout", type=_positive, default=None, metavar="SECONDS",
                   help="stop the runner after this long (default: the runner's own)")
    p.add_argument("--target", default=None, metavar="NAME")
    p.add_argument("--dt", type=_positive, default=None, metavar="SECONDS",
                   help="the exporting framework's step; NIR graphs with LIF/LI/CubaLIF need it "
                        "unless the file states it")
    p.add_argument("--inputs", required=True, metavar="IN.npz",
                   help='array "x" shaped [T, B, *input_shape]')
    p.add_argument("--out", required=True, metavar="OUT.npz")
    p.add_argument("--probe", action="append", default=[], metavar="NAME",
                   help='record a node\'s output; "v:NAME" for a membrane after reset (repeatable)')
    p.add_argument("--device", default=None,
                   help="where the reference or emulator runner computes (cpu, cuda, auto)")
    _add_from(p, dt=False)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("verify", help="float vs quantized vs target runner on a test set")
    p.add_argument("checkpoint", metavar="CKPT_DIR|FILE.nir")
    p.add_argument("--target", required=True, metavar="NAME")
    p.add_argument("--data", required=True, metavar="NAME")
    p.add_argument("--runner", default=None, help="default: the target's runner")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="first N test samples")
    p.add_argument("--max-drop", type=float, default=None, metavar="PP",
                   help="fail (exit 1) when quantization costs more accuracy than this")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="watchdog for the runner (default: scaled to the run)")
    p.add_argument("--device", default="cpu",
                   help="where the float reference and the emulator run (cpu, cuda, auto)")
    p.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                   help="split the target runner's run over N runtimes side by side (under "
                        "torchrun: N per rank)")
    p.add_argument("--report", required=True, metavar="DIR")
    _add_data_overrides(p)
    _add_from(p)
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("energy", help="operation counts and energy per inference per target")
    p.add_argument("checkpoint", metavar="CKPT_DIR|FILE.nir")
    p.add_argument("--target", default="all", metavar="NAME|all")
    p.add_argument("--data", required=True, metavar="NAME")
    p.add_argument("--limit", type=_positive_int, default=None, metavar="N", help="first N test samples")
    p.add_argument("--report", required=True, metavar="DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--simulator", default=None, metavar="sanafe",
                   help="also simulate each target on its SANA-FE architecture (loihi, loihi2 "
                        "-> loihi.yaml; pip install 'cf2neuro[sanafe]') and print SANA-FE's "
                        "energy and latency next to the estimate, with the ratio and why")
    _add_data_overrides(p)
    _add_from(p)
    p.set_defaults(func=_cmd_energy)

    p = sub.add_parser("compare", help="the targets that hold a checkpoint, side by side: "
                                       "accuracy, exact match, latency, energy")
    p.add_argument("checkpoint", metavar="CKPT_DIR")
    p.add_argument("--target", default="all", type=lambda s: s if s == "all" else s.split(","),
                   metavar="all|NAME[,NAME...]")
    p.add_argument("--data", required=True, metavar="NAME")
    p.add_argument("--limit", type=_positive_int, default=None, metavar="N",
                   help="first N test samples")
    p.add_argument("--timeout", type=_positive, default=None, metavar="SECONDS",
                   help="watchdog for each target runner")
    p.add_argument("--report", required=True, metavar="DIR")
    _add_data_overrides(p)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("runtime", help="create a runner's isolated runtime")
    p.add_argument("action", choices=["setup"])
    p.add_argument("name", metavar="RUNNER", help="e.g. lava, nengo-loihi, xylosim (or a "
                                                  "target: xylo)")
    p.set_defaults(func=_cmd_runtime)

    p = sub.add_parser("targets", help="every target: back end, numerics, limits, runners")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_targets)

    p = sub.add_parser("demo", help="the main job on the embedded digits data set")
    p.add_argument("--out", default="cf2neuro-demo")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        with stop_on_signals(restore=False):  # a signal while exiting is ignored: work done
            return args.func(args)
    except Cf2NeuroError as e:
        # one line; a runner's log (the lines after the first) only with -v
        first, *detail = str(e).splitlines() or [type(e).__name__]
        if detail and not args.verbose:
            first += " (run with -v for the runner's log)"
        print(f"cf2neuro {args.command}: error: {first}", file=sys.stderr)
        if detail and args.verbose:
            print("\n".join(detail), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP: runtimes stopped, no partial file
        status, name = exit_status(e)
        print(f"cf2neuro {args.command}: stopped by {name}; runtimes stopped, nothing "
              f"half-written (rerun to start again)", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
