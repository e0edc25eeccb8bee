"""The docs' deployability table is the script's output, for the code as it is now."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_docs_table_is_current():
    from deploy_matrix import matrix, table

    m = matrix()
    assert set(m) >= {"mlp", "vgg-small", "vgg11", "resnet-small", "resnet19", "spikformer"}
    assert m["mlp"]["loihi2"] is None and m["mlp"]["cmos45"] is None
    for name, row in m.items():  # every refusal names a node or a limit, and a way out
        for target, why in row.items():
            assert why is None or ("'" in why or "limit" in why or "holds" in why), (name, why)
    want = table(m)
    have = (ROOT / "docs" / "deploy_matrix.md").read_text()
    assert have == want, ("docs/deploy_matrix.md is stale: run "
                          "`.venv/bin/python benchmarks/deploy_matrix.py --table "
                          "docs/deploy_matrix.md`")
