"""cf2neuro's analytic energy next to SANA-FE's simulated energy, per target and network.

    .venv/bin/python benchmarks/sanafe_energy.py [--samples 50] [--epochs 10] [--nets mlp,cnn]

Trains small digits networks of CF neurons that reset to zero and send binary
spikes (``--neuron reset=zero max_spikes=1 signed=false``): ``mlp`` (the
64-256-256-10 MLP) with Poisson-encoded inputs (binary: SANA-FE input
neurons) and with direct-current inputs (graded: the first layer's bias in
SANA-FE; loihi refuses them and is run on its loihi2 quantization), ``cnn``
(vgg-small with channels [8, 8]: two 3x3 conv layers, no pooling) with
Poisson inputs. For each target with a SANA-FE architecture (loihi ->
loihi.yaml; loihi2 -> loihi.yaml, the closest) it quantizes, runs the
emulator on the first test samples, prices the counts with the target's
analytic model and simulates the same samples in SANA-FE (sanafe 2.2.9),
then prints J per inference both ways, the ratio SANA-FE / analytic per
component (synapse, neuron, routing), SANA-FE's latency per inference,
whether SANA-FE's spikes equal the emulator's, and the wall time. The
reasons for the gaps are printed once at the end (from the last row).
"""

import argparse
import tempfile
import time
from pathlib import Path

NEURON = {"reset": "zero", "max_spikes": 1, "signed": False}
NETS = {"mlp": [("mlp", {}, "poisson"), ("mlp", {}, "direct")],
        "cnn": [("vgg-small", {"channels": [8, 8]}, "poisson")]}
TARGETS = ("loihi", "loihi2")


def checkpoint(model: str, options: dict, encoding: str, epochs: int, root: Path):
    from cf2neuro.checkpoint import source_graph
    from cf2neuro.train import TrainConfig, train
    from cf2neuro.verify import calibration_inputs, fit_inputs, test_inputs

    ck = root / f"{model}_{encoding}"
    train(TrainConfig(model=model, model_options=options, epochs=epochs, encoding=encoding,
                      neuron=NEURON), ck, progress=False)
    g = source_graph(ck)
    return g, fit_inputs(g, test_inputs(ck, None, None, None)[0]), fit_inputs(
        g, calibration_inputs(ck, None))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=50, help="test samples simulated")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--nets", default="mlp,cnn", help=f"comma list of {sorted(NETS)}")
    args = ap.parse_args()
    from cf2neuro.backends.loihi2.sanafe_compare import sanafe_report

    head = (f"{'network':<18}{'target':<8}{'run on':<8}{'analytic J':>12}{'SANA-FE J':>12}"
            f"{'ratio':>7}{'w/o in':>7}{'syn':>6}{'neur':>6}{'route':>7}{'latency us':>11}"
            f"{'spikes':>8}{'wall s':>8}")
    print(head)
    print("-" * len(head))
    last = None
    with tempfile.TemporaryDirectory() as tmp:
        for key in args.nets.split(","):
            for model, options, enc in NETS[key]:
                g, x, cal = checkpoint(model, options, enc, args.epochs, Path(tmp))
                for target in TARGETS:
                    t0 = time.perf_counter()
                    rep = sanafe_report(g, x, cal, target, samples=args.samples)
                    s, c = rep["sanafe"], rep["comparison"]
                    comp = [c["components"][k]["ratio"] for k in ("synapse", "neuron", "routing")]
                    print(f"{key + ' (' + enc + ')':<18}{target:<8}"
                          f"{'loihi2' if rep['notes'] else target:<8}"
                          f"{rep['analytic']['total_joules_per_inference']:>12.4g}"
                          f"{s['joules_per_inference']:>12.4g}{c['ratio']:>7.3g}"
                          f"{c.get('ratio_without_input_layer', c['ratio']):>7.3g}"
                          + "".join(f"{r:>6.3g}" if r is not None else f"{'-':>6}"
                                    for r in comp[:2])
                          + (f"{comp[2]:>7.3g}" if comp[2] is not None else f"{'-':>7}")
                          + f"{s['latency_per_inference_s'] * 1e6:>11.1f}"
                          f"{'equal' if s['agreement']['exact'] else 'DIFFER':>8}"
                          f"{time.perf_counter() - t0:>8.1f}")
                    last = rep
    print(f"\n{args.samples} test samples each; ratio: SANA-FE / analytic J per inference; "
          f"w/o in: the same without the input layer where SANA-FE feeds graded inputs as a "
          f"bias (no synaptic events); syn/neur/route: SANA-FE / analytic per component "
          f"(synapse+dendrite / synops, soma / neuron updates, network / spike routing). "
          f"loihi and loihi2 rows are equal when both run the same quantization: SANA-FE has "
          f"one Loihi model and cf2neuro prices loihi2 with Loihi 1's energies")
    if last is not None:
        print("why they differ (last row):")
        for r in last["comparison"]["reasons"]:
            print(f"  - {r}")


if __name__ == "__main__":
    main()
