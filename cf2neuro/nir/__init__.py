"""NIR, the exchange boundary (DESIGN §3): IR -> NIR file -> IR.

- `to_nir(graph, dt=None, strict=False)` / `write_nir(graph, path, ...)`:
  lower an IR graph to a `nir.NIRGraph` (and write it atomically).
  ``portable=True`` (what `export_graph` writes): readable by nir 1.0.4 to
  the newest (`compat`).
- `from_nir(path_or_graph, dt=None)`: read a NIR graph, cf2neuro's own or a
  third party's (snnTorch, Norse, Sinabs, Rockpool, ...), into the IR.

`export` documents what a non-cf2neuro consumer gets from a CF model;
`discretize` documents dt and each framework's discretization.
"""

from .discretize import DEFAULT_DT
from .export import EXPORTERS, REFUSED, to_nir, write_nir
from .importer import IMPORTERS, from_nir, read_nir_file


def export_graph(graph, path, strict: bool = False, dt: float | None = None,
                 input_name: str | None = None, peer: str | None = None, **_) -> dict:
    """Write an IR graph as a NIR file (the ``.nir`` exporter of `cf2neuro export`).

    The file is portable: every nir release from 1.0.4 to the newest reads it.
    `peer` writes it for that framework's importer (`peers`).
    """
    ng = write_nir(graph, path, dt=dt, strict=strict, portable=True, input_name=input_name,
                   peer=peer)
    neurons = sorted(n.name for n in graph.nodes.values() if n.op == "CFNeuron")
    return {"dt": float(ng.metadata["dt"]), "nodes": len(ng.nodes), "edges": len(ng.edges),
            "cf_layers": neurons}


__all__ = ["DEFAULT_DT", "export_graph", "EXPORTERS", "IMPORTERS", "REFUSED", "from_nir",
           "read_nir_file", "to_nir", "write_nir"]
