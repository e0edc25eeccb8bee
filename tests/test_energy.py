"""Energy: hand-computed operation counts, per-target arithmetic, the digits report."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_report import assert_png, html_tables, md_tables

from cf2neuro.cli import main as cli
from cf2neuro.energy import (count_operations, energy, energy_report, energy_targets,
                             needed_probes, write_energy_report)
from cf2neuro.ir.graph import Graph
from cf2neuro.report import EnergyRecord, format_joules
from cf2neuro.targets import TargetError, load_target

W1 = np.array([[1.0, 0.0, 2.0], [0.5, -1.0, 0.0]], dtype=np.float32)   # 4 nonzero of 6
W2 = np.array([[1.0, 1.0], [0.0, 3.0], [2.0, 0.0]], dtype=np.float32)  # 4 nonzero of 6


def tiny():
    g = Graph({"dt": 1e-3})
    g.add_node("x", "Input", attrs={"shape": [3]})
    g.add_node("fc1", "Linear", ["x"], {"weight": W1})
    g.add_node("n1", "CFNeuron", ["fc1"], attrs={"max_spikes": 3, "signed": True})
    g.add_node("fc2", "Linear", ["n1"], {"weight": W2})
    g.add_node("out", "Output", ["fc2"])
    return g.validate()


def test_hand_computed_counts_on_a_tiny_graph():
    g = tiny()
    assert needed_probes(g) == ["x", "n1"]
    # T = 2 steps, B = 2 samples
    x = np.array([[[0.5, 0.0, 0.2], [0.0, 0.0, 0.0]],        # step 0: analog -> MACs
                  [[1.0, 0.0, 1.0], [0.0, -1.0, 0.0]]])      # step 1: ternary -> synops
    n1 = np.array([[[3, 0], [0, 0]],                         # graded spike 3: 1 event
                   [[1, -2], [0, 1]]])
    c = count_operations(g, {"x": x, "n1": n1})
    assert (c.timesteps, c.samples) == (2, 2)
    fc1, fc2, n = c.layers["fc1"], c.layers["fc2"], c.layers["n1"]
    # fc1 step 0: input 0 reaches 2 nonzero weights, input 2 reaches 1 -> 3 MACs / 2 samples
    assert fc1["macs"] == [1.5, 0.0] and fc1["synops"] == [0.0, (2 + 1 + 1) / 2]
    assert fc1["events"] == [1.0, 1.5] and fc1["dense_macs"] == [6.0, 6.0]
    # fc2 (neuron-fed: graded spikes are synops): column 0 reaches 2 weights, column 1 reaches 2
    assert fc2["kind"] == "synaptic"
    assert fc2["events"] == [0.5, 1.5] and fc2["payload"] == [1.5, 2.0]
    assert fc2["synops"] == [1.0, 3.0] and fc2["macs"] == [0.0, 0.0]
    assert fc2["payload_synops"] == [3.0, (2 + 4 + 2) / 2]
    assert n["neuron_updates"] == [2.0, 2.0] and n["spikes"] == [0.5, 1.5]
    assert n["spike_payload"] == [1.5, 2.0] and n["feeds"] == []
    t = c.totals()
    assert t["synops"] == 2.0 + 4.0 and t["macs"] == 1.5 and t["neuron_updates"] == 4.0


def test_conv_counts_respect_padding_edges_and_stride():
    g = Graph()
    g.add_node("x", "Input", attrs={"shape": [1, 3, 3]})
    g.add_node("c", "Conv2d", ["x"], {"weight": np.ones((2, 1, 3, 3), np.float32)},
               attrs={"padding": [1, 1]})
    g.add_node("n", "CFNeuron", ["c"])
    g.add_node("out", "Output", ["n"])
    g.validate()
    x = np.zeros((1, 1, 1, 3, 3))
    x[0, 0, 0, 0, 0] = 1.0   # corner: reaches 2x2 outputs per channel
    x[0, 0, 0, 1, 1] = 1.0   # centre: reaches all 3x3
    c = count_operations(g, {"x": x, "n": np.zeros((1, 1, 2, 3, 3))})
    assert c.layers["c"]["synops"] == [2 * (4 + 9)]
    assert c.layers["c"]["dense_macs"] == [2 * (4 * 4 + 4 * 6 + 9)]  # corners, edges, centre


def test_missing_probe_is_a_clear_error():
    with pytest.raises(Exception, match="needs probe 'n1'"):
        count_operations(tiny(), {"x": np.zeros((1, 1, 3))})


def _counts():
    g = tiny()
    x = np.array([[[1.0, 0.0, 1.0]], [[0.0, 0.0, 0.0]]])        # T=2, B=1, binary input
    n1 = np.array([[[1, 0]], [[1, 1]]])
    return count_operations(g, {"x": x, "n1": n1})


def test_cmos45_arithmetic_and_ann_convention():
    t = load_target("cmos45")
    assert t.runner == "reference" and t.energy["mac_pj"]["value"] == 4.6
    assert t.energy["ac_pj"]["value"] == 0.9 and "Horowitz" in t.energy["ac_pj"]["source"]
    c = _counts()
    # synops: fc1 step0 3 (binary input), fc2: step0 col0 -> 2, step1 both -> 4
    assert c.totals()["synops"] == 9.0 and c.totals()["macs"] == 0.0
    e = energy(c, "cmos45")
    assert e["total_joules_per_inference"] == pytest.approx(9 * 0.9e-12)
    assert e["ann_joules_per_inference"] == pytest.approx((6 + 6) * 4.6e-12)  # once, dense
    assert e["snn_vs_ann"] == pytest.approx(9 * 0.9 / (12 * 4.6))
    assert e["measured"] and e["sources"]["mac_pj"]["value_pj"] == 4.6


def test_loihi_arithmetic_with_the_toml_constants():
    c = _counts()
    e = energy(c, "loihi")
    k = {name: v["value"] for name, v in load_target("loihi").energy.items()
         if isinstance(v, dict)}
    assert (k["synop_pj"], k["neuron_update_active_pj"], k["neuron_update_inactive_pj"],
            k["spike_within_tile_pj"], k["tile_hop_ew_pj"]) == (23.6, 81.0, 52.0, 1.7, 3.0)
    # neurons: 2 x 2 steps = 4 updates, 3 active; 3 spikes routed within one tile
    assert e["by_kind"]["synops"] == pytest.approx(9 * 23.6e-12)
    assert e["by_kind"]["neuron_updates"] == pytest.approx((3 * 81 + 1 * 52) * 1e-12)
    assert e["by_kind"]["spike_routing"] == pytest.approx(3 * 1.7e-12)
    assert e["total_joules_per_inference"] == pytest.approx(sum(e["by_kind"].values()))
    assert e["by_layer"]["fc2"]["synops"] == pytest.approx(6 * 23.6e-12)
    assert e["measured"] is True and all("Davies" in s["source"] for k_, s in
                                         e["sources"].items() if k_ != "cores_per_tile")


def test_loihi2_energies_are_marked_as_an_assumption():
    t = load_target("loihi2")
    assert t.energy["measured"] is False
    for key, v in t.energy.items():
        if key.endswith("_pj"):
            assert "not published" in v["source"] and "upper bound" in v["source"]
    e = energy(_counts(), t)
    assert e["measured"] is False
    assert any("NOT published" in a for a in e["assumptions"])
    assert {"cmos45", "loihi", "loihi2"} <= set(energy_targets())


def test_energy_constants_need_a_source(tmp_path, monkeypatch):
    (tmp_path / "bad.toml").write_text('name = "bad"\nrunner = "reference"\n'
                                       '[energy]\nmodel = "cmos45"\n[energy.mac_pj]\nvalue = 4.6\n')
    with pytest.raises(TargetError, match="source"):
        load_target(str(tmp_path / "bad.toml"))


@pytest.fixture(scope="module")
def digits_ckpt(tmp_path_factory):
    from cf2neuro.train import TrainConfig, train
    d = tmp_path_factory.mktemp("energy") / "ckpt"
    train(TrainConfig(epochs=5, lr=2e-2), d, progress=False)
    return d


def test_energy_report_on_digits(digits_ckpt, tmp_path):
    r = energy_report(digits_ckpt, targets="all", limit=100, progress=False)
    assert {"cmos45", "loihi", "loihi2"} <= set(r["targets"]) and r["samples"] == 100
    for name, e in r["targets"].items():
        for key in ("total_joules_per_inference", "by_kind", "by_layer", "assumptions",
                    "sources", "measured", "deployable"):
            assert key in e, (name, key)
        assert e["total_joules_per_inference"] == pytest.approx(sum(e["by_kind"].values()))
        assert 1e-10 < e["total_joules_per_inference"] < 1e-4, name
    cm = r["targets"]["cmos45"]
    assert cm["total_joules_per_inference"] < cm["ann_joules_per_inference"]
    assert not r["targets"]["loihi2"]["measured"] and r["targets"]["loihi"]["measured"]
    # the default digits model sends signed spikes: loihi refuses it and says so
    assert not r["targets"]["loihi"]["deployable"]
    assert any("refuses" in a for a in r["targets"]["loihi"]["assumptions"])
    # Loihi's synops cost more than 45 nm ACs
    assert r["targets"]["loihi2"]["total_joules_per_inference"] > cm["total_joules_per_inference"]
    # the typed record reads every key and gives the same dict back: energy.json is the result
    assert EnergyRecord.from_json(r).to_json() == r
    rep = write_energy_report(r, tmp_path / "rep")
    for f in ("energy.json", "energy.md", "energy.html", "energy.png"):
        assert (rep / f).stat().st_size > 100
    assert_png(rep / "energy.png")
    assert json.loads((rep / "energy.json").read_text()) == json.loads(json.dumps(r))
    md, page = (rep / "energy.md").read_text(), (rep / "energy.html").read_text()
    tables = md_tables(md)
    assert tables == html_tables(page)
    totals = {row[0]: row[1] for row in tables[0][1:]}
    assert totals == {n: format_joules(e["total_joules_per_inference"])
                      for n, e in r["targets"].items()}
    assert "data:image/png;base64," in page


def test_cli_energy_prints_with_the_report_formatter(digits_ckpt, tmp_path, capsys):
    assert cli(["energy", str(digits_ckpt), "--target", "cmos45", "--data", "digits",
                "--limit", "50", "--report", str(tmp_path), "--quiet"]) == 0
    r = json.loads((tmp_path / "energy.json").read_text())
    out = capsys.readouterr().out
    assert format_joules(r["targets"]["cmos45"]["total_joules_per_inference"]) in out
    assert "energy.html" in out and (tmp_path / "energy.html").is_file()


def test_the_energy_package_draws_nothing_itself():
    """The bar chart lives in cf2neuro.report.plots: importing energy loads no matplotlib."""
    source = (Path(__file__).resolve().parents[1] / "cf2neuro" / "energy" / "__init__.py")
    assert "matplotlib" not in source.read_text()
    code = ("import sys, cf2neuro.energy; "
            "print(any(m.startswith('matplotlib') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_energy_all_lists_the_targets_that_refuse_the_network(tmp_path, monkeypatch, capsys):
    """A target that cannot hold the network is listed with its reason; the others are priced."""
    from cf2neuro.cli import main
    from cf2neuro.targets import load_target
    from cf2neuro.train import TrainConfig, train

    ckpt = tmp_path / "ckpt"
    train(TrainConfig(epochs=1), ckpt, progress=False)
    text = open(load_target("loihi").path).read()
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "strict.toml").write_text(text.replace('name = "loihi"', 'name = "strict"')
                                                .replace('fallback_quantization = "loihi2"', ""))
    monkeypatch.setenv("CF2NEURO_TARGETS", str(tmp_path / "t"))
    assert main(["energy", str(ckpt), "--target", "all", "--data", "digits", "--limit", "20",
                 "--report", str(tmp_path / "e"), "--quiet"]) == 0
    out = capsys.readouterr().out
    rep = json.loads((tmp_path / "e" / "energy.json").read_text())
    assert "strict" in rep["refused"] and "binary spikes only" in rep["refused"]["strict"]
    assert {"cmos45", "loihi", "loihi2"} <= set(rep["targets"]) and "strict" not in rep["targets"]
    assert "strict" in out and "refused" in out
    md = (tmp_path / "e" / "energy.md").read_text()
    assert "cannot hold this network" in md and "strict" in md
