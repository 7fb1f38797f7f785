"""Generated forward-mode and Hessian-vector-product code: golden files.

Regenerate after an intended change with
``ADCOMPILER_UPDATE_GOLDEN=1 python -m pytest tests/test_codegen_forward.py`` and review the diff.
"""

import os

import pytest

import adcompiler as ad
from tests import corpus_models as m
from tests.test_codegen import GOLDEN, normalized

CASES = {
    "mlp_jvp": lambda: ad.jvp(m.mlp, wrt=("W1", "b1")),
    "logistic_regression_jvp": lambda: ad.jvp(m.logistic_regression, wrt="w"),
    "mlp_hvp": lambda: ad.hvp(m.mlp, wrt="W1"),
    "logistic_regression_hvp": lambda: ad.hvp(m.logistic_regression, wrt=("w", "b")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_source_matches_golden_file(name):
    source = normalized(ad.source(CASES[name](), generic=True))
    path = GOLDEN / f"{name}.py"
    if os.environ.get("ADCOMPILER_UPDATE_GOLDEN") or not path.exists():
        path.write_text(source)
    assert source == path.read_text(), f"generated code changed; review and update {path}"


def test_forward_statements_follow_their_primal_line():
    source = ad.source(ad.jvp(m.mlp, wrt="W1"), generic=True)
    lines = source.splitlines()
    h = next(i for i, line in enumerate(lines) if line.strip().startswith("h = "))
    h_dot = next(i for i, line in enumerate(lines) if line.strip().startswith("h_dot = "))
    comment = max(i for i in range(h) if lines[i].strip().startswith("# line"))
    assert comment < h_dot and not any(ln.strip().startswith("#") for ln in lines[h:h_dot])
