"""NIR, the exchange boundary (DESIGN §3): IR -> NIR file -> IR.

- `to_nir(graph, dt=None, strict=False)` / `write_nir(graph, path, ...)`:
  lower an IR graph to a `nir.NIRGraph` (and write it atomically).
- `from_nir(path_or_graph, dt=None)`: read a NIR graph, cf2neuro's own or a
  third party's (snnTorch, Norse, Sinabs, Rockpool, ...), into the IR.

`export` documents what a non-cf2neuro consumer gets from a CF model;
`discretize` documents dt and each framework's discretization.
"""

from .discretize import DEFAULT_DT
from .export import EXPORTERS, REFUSED, to_nir, write_nir
from .importer import IMPORTERS, from_nir, read_nir_file

__all__ = ["DEFAULT_DT", "EXPORTERS", "IMPORTERS", "REFUSED", "from_nir", "read_nir_file",
           "to_nir", "write_nir"]
