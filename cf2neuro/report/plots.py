"""The main job's plots: one function per figure, each writing one PNG atomically.

Every function takes plain data (numbers, dicts, numpy arrays), never a model
or a report file, so tests can draw them from made-up values, and returns the
path it wrote. matplotlib runs on the Agg backend (no display needed).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from ..errors import ConfigError  # noqa: E402
from ..fileio import atomic_path  # noqa: E402
from .units import format_joules, joule_unit  # noqa: E402

DPI = 110
POSITIVE = "#d62728"  # red: +1 spikes
NEGATIVE = "#1f77b4"  # blue: -1 spikes
SERIES_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860"]


def _save(fig, path) -> Path:
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _label_bars(ax, bars, fmt: str, fontsize: int = 8) -> None:
    for bar in bars:
        h = bar.get_height()
        if not math.isfinite(h):
            continue
        ax.annotate(fmt.format(h), (bar.get_x() + bar.get_width() / 2, h),
                    xytext=(0, 2), textcoords="offset points", ha="center", va="bottom",
                    fontsize=fontsize)


def plot_training_curve(history: Sequence[Mapping], path, title: str = "Training") -> Path:
    """Training loss and test accuracy per epoch (metrics.json `history`)."""
    if not history:
        raise ConfigError("no training history to plot (metrics.json has an empty 'history')")
    epochs = [int(h["epoch"]) for h in history]
    loss = [float(h["loss"]) for h in history]
    acc = [100.0 * float(h["test_accuracy"]) if h.get("test_accuracy") is not None else np.nan
           for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    ax_loss.plot(epochs, loss, color=SERIES_COLOURS[0], marker="." if len(epochs) <= 30 else None,
                 label="training loss")
    ax_loss.set_ylabel("training loss")
    if min(loss) > 0 and max(loss) / min(loss) > 50:
        ax_loss.set_yscale("log")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend(loc="upper right")
    ax_acc.plot(epochs, acc, color=SERIES_COLOURS[2], marker="." if len(epochs) <= 30 else None,
                label="test accuracy")
    if "train_accuracy" in history[0]:
        ax_acc.plot(epochs, [100.0 * float(h["train_accuracy"]) for h in history],
                    color=SERIES_COLOURS[1], alpha=0.7, label="training accuracy")
    finite = [a for a in acc if math.isfinite(a)]
    if finite:
        ax_acc.annotate(f"final {finite[-1]:.2f} %", (epochs[-1], finite[-1]), xytext=(-5, -14),
                        textcoords="offset points", ha="right", fontsize=8)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_accuracy(accuracies: Mapping[str, float], path,
                  title: str = "Test accuracy: float vs quantized vs Lava") -> Path:
    """One bar per stage, {label: accuracy 0..1}; the values are written on the bars."""
    if not accuracies:
        raise ConfigError("no accuracies to plot")
    labels = list(accuracies)
    values = [100.0 * float(accuracies[k]) for k in labels]
    fig, ax = plt.subplots(figsize=(6, 4))
    bars = ax.bar(labels, values, color=SERIES_COLOURS[:len(labels)], width=0.6)
    _label_bars(ax, bars, "{:.2f} %", fontsize=9)
    low = min(values)
    # zoom in so that a fraction of a point is visible; the axis says where it starts
    floor = 0.0 if low < 20 else max(0.0, 10.0 * math.floor((low - 10.0) / 10.0))
    ax.set_ylim(floor, 100.0 + (100.0 - floor) * 0.08)
    ax.set_ylabel("test accuracy (%)" + (f", axis from {floor:.0f} %" if floor else ""))
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_spike_rates(spike_rates: Mapping[str, Mapping[str, float]], path,
                     series: Mapping[str, str] | None = None,
                     title: str = "Spike rate per layer") -> Path:
    """Grouped bars: per layer, one bar per series (verify's `spike_rates`).

    `series` maps the keys inside each layer's entry to legend labels, e.g.
    {"float": "float (PyTorch)", "emulator": "emulator", "runner": "Lava"}.
    """
    if not spike_rates:
        raise ConfigError("no spike rates to plot")
    layers = list(spike_rates)
    series = dict(series or {"float": "float", "emulator": "emulator", "runner": "runner"})
    series = {k: v for k, v in series.items() if all(k in spike_rates[n] for n in layers)}
    width = 0.8 / max(len(series), 1)
    x = np.arange(len(layers))
    fig, ax = plt.subplots(figsize=(max(5.5, 1.6 * len(layers) + 3), 4))
    for i, (key, label) in enumerate(series.items()):
        values = [float(spike_rates[n][key]) for n in layers]
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label,
                      color=SERIES_COLOURS[i % len(SERIES_COLOURS)])
        _label_bars(ax, bars, "{:.3f}", fontsize=7)
    ax.set_xticks(x, layers)
    ax.set_xlabel("CF layer")
    ax.set_ylabel("mean |spike| per neuron and step")
    ax.set_title(title)
    ax.set_ylim(0, max(float(v[k]) for v in spike_rates.values() for k in series) * 1.18 or 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_spike_raster(spikes: Mapping[str, np.ndarray], path,
                      title: str = "Spike raster of one test sample") -> Path:
    """Each layer's spikes [T, neurons] over the T steps: +spikes red, -spikes blue.

    Graded spikes (|s| > 1) are shown darker in proportion to their magnitude.
    """
    if not spikes:
        raise ConfigError("no spike trains to plot")
    arrays = {}
    for name, s in spikes.items():
        a = np.asarray(s, dtype=np.float64)
        arrays[name] = a.reshape(a.shape[0], -1)  # [T, neurons]
    peak = max(1.0, max(float(np.abs(a).max(initial=0.0)) for a in arrays.values()))
    levels = 2 * int(math.ceil(peak)) + 1
    # white for 0, blue shades for negative, red shades for positive magnitudes
    half = (levels - 1) // 2
    neg = [plt.matplotlib.colors.to_rgba(NEGATIVE, 0.45 + 0.55 * (i + 1) / half)
           for i in reversed(range(half))]
    pos = [plt.matplotlib.colors.to_rgba(POSITIVE, 0.45 + 0.55 * (i + 1) / half)
           for i in range(half)]
    cmap = ListedColormap([*neg, (1, 1, 1, 1), *pos])
    fig, axes = plt.subplots(1, len(arrays), figsize=(3.2 * len(arrays) + 1.5, 5), squeeze=False)
    for ax, (name, a) in zip(axes[0], arrays.items()):
        steps, n = a.shape
        ax.imshow(a.T, aspect="auto", interpolation="nearest", cmap=cmap, vmin=-half - 0.5,
                  vmax=half + 0.5, origin="lower", extent=(-0.5, steps - 0.5, -0.5, n - 0.5))
        ax.set_xticks(range(steps) if steps <= 16 else np.linspace(0, steps - 1, 8).astype(int))
        if steps > 1:
            for t in range(1, steps):
                ax.axvline(t - 0.5, color="0.85", lw=0.5)
        pos_n, neg_n = int((a > 0).sum()), int((a < 0).sum())
        ax.set_title(f"{name}\n{n} neurons: {pos_n} +, {neg_n} − spikes", fontsize=9)
        ax.set_xlabel("time step")
        ax.set_ylabel("neuron")
    fig.legend(handles=[Patch(color=POSITIVE, label="positive spike"),
                        Patch(color=NEGATIVE, label="negative spike")],
               loc="lower center", ncol=2, bbox_to_anchor=(0.5, -0.02), fontsize=9)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return _save(fig, path)


def plot_energy(energies: Mapping[str, float | Mapping[str, float]], path,
                reference: Mapping[str, float] | None = None,
                notes: Mapping[str, str] | None = None,
                title: str = "Energy per inference by target") -> Path:
    """One bar per target, joules per inference: a number, or {kind: J} stacked by kind.

    `reference` adds hatched bars for comparison points, e.g. {"ANN on cmos45": J};
    `notes` puts a word under a target's name, e.g. {"loihi2": "assumed constants"}.
    The axis goes log when the totals span >= 2 decades; a log axis would
    distort stacked parts, so there each bar shows its total only.
    """
    parts = {k: ({"total": float(v)} if not isinstance(v, Mapping)
                 else {kind: float(x) for kind, x in v.items() if x is not None})
             for k, v in energies.items() if v is not None}
    refs = {k: float(v) for k, v in (reference or {}).items() if v is not None}
    totals = {k: sum(p.values()) for k, p in parts.items()} | refs
    if not totals:
        raise ConfigError("no energy values to plot")
    labels = list(totals)
    positive = [v for v in totals.values() if v > 0]
    log = bool(positive) and max(positive) / min(positive) >= 100
    kinds = sorted({k for p in parts.values() for k in p})
    stacked = not log and kinds != ["total"]
    factor, unit = (1.0, "J") if log or not positive else joule_unit(max(positive))
    fig, ax = plt.subplots(figsize=(max(5.5, 1.3 * len(labels) + 2.5), 4))
    x = np.arange(len(labels))
    handles = []
    for i, kind in enumerate(kinds if stacked else ["total"]):
        vals = [(parts[k].get(kind, 0.0) if stacked else totals[k]) / factor
                if k in parts else 0.0 for k in labels]
        bottom = [sum(parts[k].get(kk, 0.0) for kk in kinds[:i]) / factor
                  if stacked and k in parts else 0.0 for k in labels]
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        ax.bar(x, vals, 0.6, bottom=bottom, color=colour)
        handles.append(Patch(facecolor=colour, label=kind if stacked else "SNN (estimated)"))
    ref_x = [i for i, k in enumerate(labels) if k in refs]
    if ref_x:
        ax.bar(ref_x, [refs[labels[i]] / factor for i in ref_x], 0.6, facecolor="white",
               edgecolor="0.3", hatch="//")
        handles.append(Patch(facecolor="white", edgecolor="0.3", hatch="//",
                             label="ANN comparison"))
    for i, k in enumerate(labels):
        ax.annotate(format_joules(totals[k]), (i, totals[k] / factor), xytext=(0, 2),
                    textcoords="offset points", ha="center", va="bottom", fontsize=8)
    notes = notes or {}
    ax.set_xticks(x, [f"{k}\n({notes[k]})" if notes.get(k) else k for k in labels])
    if log:
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 3, max(positive) * 5)
    else:
        ax.set_ylim(0, max(totals.values()) / factor * 1.18 if positive else 1)
    ax.set_ylabel(f"energy per inference ({unit})" + (", log scale" if log else ""))
    if stacked or ref_x:
        ax.legend(handles=handles, loc="upper left", fontsize=8)
    ax.set_xlabel("target")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3, which="both" if log else "major")
    if len(labels) > 4:
        plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    return _save(fig, path)


__all__ = ["plot_training_curve", "plot_accuracy", "plot_spike_rates", "plot_spike_raster",
           "plot_energy"]
