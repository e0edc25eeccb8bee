"""Target files: the two Loihi targets, sources for every limit, clear errors."""

import pytest

from cf2neuro.errors import BadInputError
from cf2neuro.targets import (RESOURCE_LIMITS, TARGETS_ENV, TargetError, known_targets,
                              load_target)


def test_loihi2_is_graded_signed_fixed_point_on_lava():
    t = load_target("loihi2")
    assert (t.name, t.runner) == ("loihi2", "lava")
    n = t.numeric
    assert (n.weight_bits, n.state_bits, n.decay_bits, n.bias_mant_bits) == (8, 24, 12, 13)
    assert (n.weight_exp_min, n.weight_exp_max, n.bias_exp_min, n.bias_exp_max) == (-8, 7, 0, 7)
    assert n.graded_spikes and n.signed_spikes and n.spike_payload_bits == 24
    assert n.weight_mant_max == 255 and n.bias_mant_range == (-4096, 4095)
    assert n.vth_max == 2 ** 17 - 1 and n.input_bits == 8
    assert "trunc0" in n.decay_encoding or ">> 12" in n.decay_encoding


def test_loihi_carries_binary_spikes_only():
    n = load_target("loihi").numeric
    assert not n.graded_spikes and not n.signed_spikes and n.spike_payload_bits == 0
    assert n.input_bits == 0


@pytest.mark.parametrize("name", ["loihi", "loihi2"])
def test_every_resource_limit_names_its_source(name):
    t = load_target(name)
    assert set(RESOURCE_LIMITS) <= set(t.resources)
    for key, lim in t.resources.items():
        assert lim.value is None or lim.value > 0
        assert len(lim.source) > 20, key
    if name == "loihi":
        assert all("Davies" in lim.source for lim in t.resources.values())
        assert (t.limit("cores"), t.limit("neurons_per_core")) == (128, 1024)
    else:
        assert "Loihi 2" in t.resources["cores"].source
        assert "not published" in t.resources["fan_in"].source
        assert t.limit("neurons_per_core") == 8192


def test_unknown_target_lists_the_known_ones():
    assert {"loihi", "loihi2"} <= set(known_targets())
    with pytest.raises(TargetError, match=r"unknown target 'loihi3'; known targets: .*loihi2"):
        load_target("loihi3")
    assert issubclass(TargetError, BadInputError)  # the CLI exits 2


def test_load_by_path_and_from_the_environment(tmp_path, monkeypatch):
    text = load_target("loihi2").path
    src = open(text).read().replace('name = "loihi2"', 'name = "mine"')
    (tmp_path / "mine.toml").write_text(src)
    assert load_target(tmp_path / "mine.toml").name == "mine"
    monkeypatch.setenv(TARGETS_ENV, str(tmp_path))
    assert load_target("mine").name == "mine" and "mine" in known_targets()


@pytest.mark.parametrize("edit, match", [
    (lambda s: s.replace('source = "Davies', 'sauce = "Davies', 1), "needs a 'source'"),
    (lambda s: s.replace("weight_bits = 8", 'weight_bits = "8"'), "weight_bits must be int"),
    (lambda s: s.replace("weight_bits = 8", "weight_bits = 8\nwieght_bits = 8"), "unknown"),
    (lambda s: s.replace("state_bits = 24", ""), "lacks 'state_bits'"),
    (lambda s: s.replace("graded_spikes = false", "graded_spikes = true"), "must agree"),
    (lambda s: s.replace('runner = "lava"', ""), "needs a string 'runner'"),
    (lambda s: s.replace("value = 128", "value = -1"), "positive int"),
    (lambda s: s + "\n[[[", "cannot be read"),
])
def test_malformed_target_files_say_what_is_wrong(tmp_path, edit, match):
    src = open(load_target("loihi").path).read()
    path = tmp_path / "bad.toml"
    path.write_text(edit(src))
    with pytest.raises(TargetError, match=match):
        load_target(path)


def test_a_float_target_has_no_numeric_format(tmp_path):
    path = tmp_path / "cpu.toml"
    path.write_text('name = "cpu"\nrunner = "reference"\n[energy.mac_pj]\nvalue = 4.6\n'
                    'source = "Horowitz, ISSCC 2014"\n')
    t = load_target(path)
    assert t.numeric is None and t.energy["mac_pj"]["value"] == 4.6
    with pytest.raises(TargetError, match="no fixed-point format"):
        t.require_numeric()
