"""report.md, report.html and report.json from one report dict.

The text is built once as a short list of blocks (heading, paragraph, list,
table, image) and rendered twice: to Markdown, with the images beside it as
files, and to one self-contained HTML page with every image inline as
base64. report.json is the dict itself.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from ..fileio import atomic_path, write_json


def _pct(v) -> str:
    return "–" if v is None else f"{100 * float(v):.2f} %"


def _joules(v) -> str:
    if v is None:
        return "–"
    v = float(v)
    for factor, prefix in ((1, ""), (1e-3, "m"), (1e-6, "µ"), (1e-9, "n"), (1e-12, "p"),
                           (1e-15, "f")):
        if abs(v) >= factor:
            return f"{v / factor:.3g} {prefix}J"
    return f"{v:.3g} J"


def blocks(r: dict) -> list[tuple]:
    """The document as blocks: ("h1"|"h2"|"p", text), ("ul", [items]),
    ("table", header, rows), ("img", file name, caption)."""
    p, t, n, v, e = r["pipeline"], r["training"], r["nir"], r["verification"], r["energy"]
    plots = r["plots"]
    out: list[tuple] = [
        ("h1", r["title"]),
        ("p", f"{p['model']} on {p['data']}, T = {p['timesteps']} steps, seed {p['seed']}; "
              f"quantized for {v['target']} and run on the {v['runner']} runner. "
              f"Result: **{'PASSED' if r['passed'] else 'FAILED'}**. "
              f"The whole job took {r['seconds']:.1f} s."),
        ("h2", "Numbers"),
        ("table", ["quantity", "value"], [
            ["test accuracy, float (PyTorch)", _pct(v["float_accuracy"])],
            ["test accuracy, quantized (emulator)", _pct(v["quantized_accuracy"])],
            [f"test accuracy, {v['runner']} runner", _pct(v["runner_accuracy"])],
            ["accuracy drop, float - quantized", f"{v['accuracy_drop_pp']:.2f} pp"],
            ["argmax agreement, quantized vs float", _pct(v["argmax_agreement"])],
            [f"argmax agreement, {v['runner']} vs float", _pct(v["runner_argmax_agreement"])],
            [f"exact match, emulator vs {v['runner']} (worst probe)", _pct(v["min_exact_match"])],
            ["NIR round trip: test predictions unchanged", _pct(n["agreement"])],
            ["pipeline latency (removed by the runner)", f"{v['latency_steps']} steps"],
            ["test samples", str(v["samples"])],
            *[[f"energy per inference, {name}", _joules(x["joules_per_inference"])]
              for name, x in e["targets"].items()],
            *([["energy ratio SNN / ANN on cmos45", f"{e['snn_vs_ann_cmos45']:.3g}"]]
              if e.get("snn_vs_ann_cmos45") is not None else []),
        ]),
        ("h2", "Assumptions"),
        ("ul", list(r["assumptions"])),
        ("h2", "Training"),
        ("p", f"{t['epochs']} epochs in {t['train_seconds']:.1f} s; final test accuracy "
              f"{_pct(t['test_accuracy'])}."),
        ("img", plots["training_curve"], "Training loss and test accuracy per epoch."),
        ("h2", f"Accuracy: float vs quantized vs {v['runner']}"),
        ("img", plots["accuracy"], f"Test accuracy of the float model, the quantized model on "
                                   f"the emulator, and the {v['runner']} runner."),
        ("h2", "Spike rates per layer"),
        ("table", ["layer", "float", "emulator", v["runner"], "emulator / float"],
         [[layer, f"{x['float']:.4f}", f"{x['emulator']:.4f}", f"{x['runner']:.4f}",
           f"{x['emulator_vs_float']:.3f}"] for layer, x in v["spike_rates"].items()]),
        ("img", plots["spike_rates"], "Mean |spike| per neuron and step, per CF layer."),
        ("h2", "Spike raster of one test sample"),
        ("p", r["raster"]["description"]),
        ("img", plots["spike_raster"], "Spikes of each CF layer over the time steps; "
                                       "red positive, blue negative."),
        ("h2", "Exact match per probe (emulator vs runner)"),
        ("table", ["probe", "exact match"],
         [[k, _pct(x)] for k, x in v["exact_match"].items()]),
        ("h2", "Energy per inference"),
    ]
    if e["available"]:
        kinds = sorted({k for x in e["targets"].values() for k in x.get("by_kind", {})})
        out += [
            ("table", ["target", "per inference", *kinds, "constants", "deployable"],
             [[name, _joules(x["joules_per_inference"]),
               *[_joules(x.get("by_kind", {}).get(k)) for k in kinds],
               {True: "published", False: "**assumed**"}.get(x.get("measured"), "–"),
               "yes" if x.get("deployable", True) else "no (counted on another quantization)"]
              for name, x in e["targets"].items()]),
        ]
        ann = e["targets"].get("cmos45", {}).get("ann_joules_per_inference")
        if ann:
            out.append(("p", f"The same network as an ANN on cmos45 (one dense forward pass): "
                             f"{_joules(ann)} per inference; SNN / ANN = "
                             f"{e['snn_vs_ann_cmos45']:.3g}."))
        if "energy" in plots:
            out.append(("img", plots["energy"], "Estimated energy per inference by target."))
        if e.get("report"):
            out.append(("p", f"Details (operation counts, constants and their sources): "
                             f"{e['report']}."))
    else:
        out.append(("p", f"No energy estimate: {e.get('missing', 'not computed')}."))
    out += [
        ("h2", "Files"),
        ("ul", [f"{k}: {x}" for k, x in r["files"].items()]),
    ]
    return out


def markdown(r: dict) -> str:
    lines: list[str] = []
    for b in blocks(r):
        kind = b[0]
        if kind == "h1":
            lines += [f"# {b[1]}", ""]
        elif kind == "h2":
            lines += [f"## {b[1]}", ""]
        elif kind == "p":
            lines += [b[1], ""]
        elif kind == "ul":
            lines += [*[f"- {item}" for item in b[1]], ""]
        elif kind == "table":
            header, rows = b[1], b[2]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *["| " + " | ".join(str(c) for c in row) + " |" for row in rows], ""]
        elif kind == "img":
            lines += [f"![{b[2]}]({b[1]})", "", f"*{b[2]}*", ""]
    return "\n".join(lines)


def _html_text(text: str) -> str:
    """Escape, then turn **bold** into <strong>."""
    parts = html.escape(text).split("**")
    return "".join(f"<strong>{s}</strong>" if i % 2 else s for i, s in enumerate(parts))


_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 960px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: left; }
th { background: #f3f3f3; }
figure { margin: 0.5em 0 1.5em; }
figure img { max-width: 100%; }
figcaption { color: #555; font-size: 0.9em; }
"""


def to_html(r: dict, directory) -> str:
    """One self-contained page: every image read from `directory` and inlined as base64."""
    directory = Path(directory)
    body: list[str] = []
    for b in blocks(r):
        kind = b[0]
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{_html_text(b[1])}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_html_text(b[1])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_html_text(i)}</li>" for i in b[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{_html_text(c)}</th>" for c in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{_html_text(str(c))}</td>" for c in row)
                           + "</tr>" for row in b[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode((directory / b[1]).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(b[2])}" '
                        f'src="data:image/png;base64,{data}"><figcaption>'
                        f"{_html_text(b[2])}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(r['title'])}</title><style>{_STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_documents(r: dict, directory) -> dict:
    """Write report.json, report.md and report.html into `directory` (plots already there)."""
    directory = Path(directory)
    page = to_html(r, directory)  # reads the PNGs first: a missing plot fails before any write
    write_json(directory / "report.json", r)
    with atomic_path(directory / "report.md") as tmp:
        tmp.write_text(markdown(r), encoding="utf-8")
    with atomic_path(directory / "report.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return {name: str(directory / name) for name in ("report.json", "report.md", "report.html")}


__all__ = ["blocks", "markdown", "to_html", "write_documents"]
