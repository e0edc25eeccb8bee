"""NIR graphs that would run as garbage: refused with the file, the node and the fix."""

import h5py
import nir
import numpy as np
import pytest
from .catalogue_helpers import cli_refuses
from .checks import nothing_partial

from cf2neuro.errors import BadInputError, UnsupportedError
from cf2neuro.nir import from_nir

N = 3


def lif_graph(tau=1e-3, weight=None, cycle=False, dt=1e-4, **lif):
    """Input -> Linear -> LIF -> Output; `cycle` adds a Linear loop around the Linear."""
    params = dict(tau=np.full(N, tau), r=np.ones(N), v_leak=np.zeros(N),
                  v_threshold=np.ones(N))
    params.update(lif)
    nodes = {"in": nir.Input(input_type={"input": np.array([N])}),
             "fc": nir.Linear(weight=np.eye(N, dtype=np.float32) if weight is None else weight),
             "lif": nir.LIF(**params),
             "out": nir.Output(output_type={"output": np.array([N])})}
    edges = [("in", "fc"), ("fc", "lif"), ("lif", "out")]
    if cycle:
        nodes["rec"] = nir.Linear(weight=np.eye(N, dtype=np.float32))
        edges += [("fc", "rec"), ("rec", "fc")]
    return nir.NIRGraph(nodes=nodes, edges=edges,
                        metadata={"dt": dt} if dt is not None else {})


CASES = {  # name: (graph, words)
    "NaN weight": (lambda: lif_graph(weight=np.full((N, N), np.nan, np.float32)),
                   ["node 'fc'", "'weight'", "NaN or infinite"]),
    "Inf threshold": (lambda: lif_graph(v_threshold=np.array([1.0, np.inf, 1.0])),
                      ["node 'lif'", "v_threshold", "NaN or infinite"]),
    "dt/tau = 1": (lambda: lif_graph(tau=1e-4), ["node 'lif'", "dt/tau = 1", "--dt"]),
    "dt/tau = 2": (lambda: lif_graph(tau=5e-5), ["node 'lif'", "dt/tau = 2", "unstable"]),
    "negative tau": (lambda: lif_graph(tau=-1e-3), ["node 'lif'", "tau -0.001"]),
    "cycle without neuron": (lambda: lif_graph(cycle=True),
                             ["closes a cycle with no neuron", "'rec'", "Put a neuron"]),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("runner", ["reference", "emulator"])
def test_run_refuses_a_graph_that_would_compute_garbage(case, runner, tmp_path, capsys):
    make, words = CASES[case]
    path = tmp_path / "g.nir"
    nir.write(path, make())
    np.savez(tmp_path / "x.npz", x=np.ones((5, 2, N), np.float32))
    argv = ["run", path, "--runner", runner, "--inputs", tmp_path / "x.npz", "--out",
            tmp_path / "y.npz"] + (["--target", "loihi2"] if runner == "emulator" else [])
    cli_refuses(capsys, argv, "g.nir", *words)
    nothing_partial(tmp_path / "y.npz")


@pytest.mark.parametrize("case", list(CASES))
def test_from_nir_raises_the_same_for_python_callers(case):
    with pytest.raises(UnsupportedError):
        from_nir(CASES[case][0]())


def test_a_user_dt_that_makes_the_step_unstable_is_named(tmp_path, capsys):
    """The graph is fine at its own dt; --dt 2e-3 >= tau = 1e-3 is not."""
    path = tmp_path / "g.nir"
    nir.write(path, lif_graph(tau=1e-3, dt=None))
    np.savez(tmp_path / "x.npz", x=np.ones((5, 2, N), np.float32))
    cli_refuses(capsys, ["run", path, "--dt", "2e-3", "--inputs", tmp_path / "x.npz", "--out",
                         tmp_path / "y.npz"], "dt = 0.002", "dt/tau = 2")


def test_a_cycle_through_a_neuron_is_still_a_recurrent_connection():
    g = lif_graph()
    g.nodes["rec"] = nir.Linear(weight=np.eye(N, dtype=np.float32))
    g.edges += [("lif", "rec"), ("rec", "fc")]
    assert ("lif", "rec") in from_nir(g).back_edges()


def test_unknown_node_types_and_dangling_edges(tmp_path):
    g = lif_graph()
    g.edges.append(("fc", "nowhere"))
    with pytest.raises(BadInputError, match="'nowhere'.*not a node"):
        from_nir(g)
    path = tmp_path / "g.nir"
    nir.write(path, lif_graph())
    with h5py.File(path, "r+") as f:
        t = f["node/nodes/lif/type"]
        del f["node/nodes/lif/type"]
        f["node/nodes/lif"].create_dataset("type", data=b"Banana")
        assert t is not None
    with pytest.raises(BadInputError, match="'lif'.*unknown node type 'Banana'"):
        from_nir(path)
