"""The IR: verifier and printer."""

import pytest

from adcompiler import ssa as ir
from adcompiler.frontend import lower_function
from adcompiler.ops import op_for
from tests import corpus_models as m


def test_verifier_accepts_lowered_functions():
    for fn in (m.mlp, m.logistic_regression, m.broadcast_reduce, m.indexing):
        ir.verify(lower_function(fn))


def test_verifier_catches_double_definition_and_use_before_definition():
    import numpy as np

    x = ir.Value("x")
    node = ir.Node(op_for(np.exp), [x])
    twice = ir.Function("f", [x], ir.Block(nodes=[node, node]), [node.output])
    with pytest.raises(ir.VerifyError, match="defined twice"):
        ir.verify(twice)
    later = ir.Value("later")
    early = ir.Function("f", [x], ir.Block(nodes=[ir.Node(op_for(np.exp), [later])]), [])
    with pytest.raises(ir.VerifyError, match="used before it is defined"):
        ir.verify(early)


def test_printer_shows_ops_attributes_and_source_lines():
    text = ir.format_function(lower_function(m.mlp))
    assert text.startswith("function mlp(")
    assert "max(" in text and "axis=1" in text and "keepdims=True" in text
    assert "# corpus_models.py:" in text
