"""What quantization did, per node: the records every back end leaves in node.meta["quant"].

    quantization_report(qgraph) -> list[dict]      format_report(qgraph) -> str
"""

from __future__ import annotations

from ..ir.graph import Graph

# Calibration clips weights at a high percentile, so ~0.1 % clipped is by design; ten
# times that means the format saturates a real part of the layer.
CLIP_WARN = 0.01


def quantization_warnings(records: list[dict]) -> list[str]:
    """Where the target's formats saturate or lose resolution: weights or biases clipped
    beyond CLIP_WARN, and every note a back end's quantizer left (state overflow, coarse
    thresholds)."""
    out = []
    for r in records:
        out += [f"node {r['node']}: {note}" for note in r.get("notes") or []]
        for key, what in (("clipped_fraction", "weights"), ("bias_clipped_fraction", "biases")):
            f = r.get(key)
            if isinstance(f, (int, float)) and f > CLIP_WARN:
                out.append(f"node {r['node']}: {f:.1%} of its {what} saturate the target's "
                           f"format (clipped); the quantized layer differs from the float "
                           f"one. Check the weights' range (outliers) or the target")
    return out


def silence_warnings(spike_rates: dict[str, dict], run: str = "emulator") -> list[str]:
    """Layers whose `run` (the quantized emulator, or a float runner) fires no spike at all."""
    out = []
    for layer, r in spike_rates.items():
        if r.get(run, 1.0) == 0.0:
            also = (" (the float model fires none either)" if r.get("float", 0.0) == 0.0
                    else f" (the float model fires {r['float']:.4g} per neuron and step)")
            out.append(f"layer {layer} fires no spike in the {run} run{also}; every later "
                       f"layer sees no input. Check the inputs' scale and the thresholds")
    return out


def quantization_report(qgraph: Graph) -> list[dict]:
    """One dict per quantized node: {"node", "op", **node.meta["quant"]}."""
    return [{"node": n.name, "op": n.op, **n.meta["quant"]} for n in qgraph
            if isinstance(n.meta.get("quant"), dict)]


def format_report(qgraph: Graph) -> str:
    """The report as a readable table, one row per quantized node, then the notes."""
    fp = qgraph.meta.get("fixed_point", {})
    rows = [("node", "op", "scale", "w_exp", "clip", "clipped", "err max/mean", "vth", "dv",
             "b_exp", "msg bits")]
    notes = []
    for r in quantization_report(qgraph):
        err = (f"{r['round_err_max']:.4f}/{r['round_err_mean']:.4f}" if "round_err_max" in r
               else "")
        rows.append((r["node"], r["op"], f"{r['scale']:.4g}" if "scale" in r else "",
                     str(r.get("weight_exp", "")), f"{r['clip']:.4g}" if "clip" in r else "",
                     f"{r['clipped_fraction']:.2%}" if "clipped_fraction" in r else "",
                     err, str(r.get("vth", "")), str(r.get("dv", "")),
                     str(r.get("bias_exp", "")), str(r.get("num_message_bits", ""))))
        notes += [f"{r['node']}: {x}" for x in r.get("notes", [])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-" * max(len(x) for x in lines))
    head = (f"target {fp.get('target')}: input_scale {fp.get('input_scale', 0):.6g} "
            f"({fp.get('input_bits')} bits, {'signed' if fp.get('input_signed') else 'unsigned'})"
            f", latency {fp.get('latency')} steps, output_scale {fp.get('output_scale', 0):.6g}")
    return "\n".join([head, *lines, *(["notes:"] + notes if notes else [])])

