"""Calls of helpers that are not inlined (recursive ones): see `adcompiler.calls`.

call(args)         the helper called from the user's code (in the primal IR)
call_forward       `helper_forward(args)`: (value, saved)
call_adjoint       `helper_adjoint(saved, g)`: the adjoints of the arguments
call_jvp           `helper_jvp(args, tangents)`: (value, tangent), the tangent function
                   (forward mode) of the helper or of one of its generated functions
"""

from __future__ import annotations

import ast

from adcompiler.ops.core import Op, Param, register


def _spelled(suffix):
    def spell(node, args):
        name = node.attrs["name"] + suffix
        return ast.Call(ast.Name(name, ast.Load()), list(args), [])

    return spell


def call(*args, function, name=""):
    return function(*args)


def generated_only(*args, function, name=""):
    raise RuntimeError("only generated code calls this")


_CALL_PARAMS = (Param("args", "varargs"), Param("function", "attr"), Param("name", "attr"))
CALL = register(Op("call", call, _CALL_PARAMS, _spelled(""), regions=True, unique=True))
CALL_FWD = register(
    Op(
        "call_forward",
        generated_only,
        _CALL_PARAMS,
        _spelled("_forward"),
        nondiff=True,
        unique=True,
    )
)
CALL_BWD = register(
    Op(
        "call_adjoint",
        generated_only,
        _CALL_PARAMS,
        _spelled("_adjoint"),
        nondiff=True,
        unique=True,
    )
)
# `function` is the key of the tangent function (adcompiler.calls.JvpKey), `name` its
# generated name. Like `call`, the transforms handle it (forward mode: a call of the
# tangent function of this tangent function; reverse mode has no rule for it yet).
CALL_JVP = register(Op("call_jvp", generated_only, _CALL_PARAMS, _spelled(""), regions=True))
