"""Python builtins on scalars (`min`, `max`), and NumPy's truth tests (`np.all`, `np.any`)."""

from __future__ import annotations

import builtins

import numpy as np

from adcompiler.ops.core import Op, Param, adjoint, register, tangent


def _spelling(name):
    import ast

    def spell(node, args):
        return ast.Call(ast.Name(name, ast.Load()), list(args), [])

    return spell


for _name, _fn, _pick in [("min", builtins.min, "le"), ("max", builtins.max, "ge")]:
    # max((a, b), (c, d)) compares tuples, as Python does: not arrays to pack
    args = (Param("args", "varargs", tuples="refuse"),)
    register(Op(f"builtin_{_name}", _fn, args, _spelling(_name), foldable=True))

    def _rule(g, ans, *args, _pick=_pick):
        # The gradient goes to the first argument equal to the result, as Python picks it.
        # (masks as booleans: `1 - taken` would be an int64, and `g * int64` float64)
        b = g.builder
        taken = None
        out = []
        for a in args:
            here = a == ans
            if taken is not None:
                here = b.call(np.logical_and, here, b.call(np.logical_not, taken))
            out.append(g * here)
            taken = here if taken is None else b.call(np.logical_or, taken, here)
        return tuple(out)

    adjoint(_fn)(_rule)

    def _tangent(ts, ans, *args, _rule=_rule):
        parts = [_rule(t, ans, *args)[i] for i, t in enumerate(ts) if t is not None]
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        return total

    tangent(_fn)(_tangent)


for _name, _fn in [("all", np.all), ("any", np.any)]:
    register(Op(_name, _fn, (Param("x"), Param("axis", "attr", None)), f"np.{_name}", nondiff=True))
