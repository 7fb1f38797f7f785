"""Rules for the scipy.special functions models use most, when SciPy is installed.

SciPy is optional: without it this module registers nothing. Generated code
calls the functions by their scipy.special names (``expit(z)``), which
`runtime.EXTERNAL` provides to generated code and stand-alone files import
(``from scipy.special import expit``).
"""

from __future__ import annotations

import ast

import numpy as np

from adcompiler import runtime
from adcompiler.ops.core import NO_DEFAULT, Param, adjoint, tangent
from adcompiler.ops.numpy_math import _expand
from adcompiler.ops.numpy_ops import _call, defbinary, defop, defunary

try:
    from scipy import special
except ImportError:  # pragma: no cover - SciPy is not a requirement
    special = None

SQRT_PI = float(np.sqrt(np.pi))


def _external(fn):
    runtime.EXTERNAL[fn.__name__] = fn
    return fn.__name__


def _polygamma_spelling(node, args):
    return ast.Call(ast.Name("polygamma", ast.Load()), [ast.Constant(node.attrs["n"]), *args], [])


def _register():
    s = special
    defunary("expit", s.expit, lambda g, ans, x: g * ans * (1 - ans), _external(s.expit))
    defunary("logit", s.logit, lambda g, ans, x: g / (x * (1 - x)), _external(s.logit))
    defunary(
        "erf",
        s.erf,
        lambda g, ans, x: g * (2 / SQRT_PI) * _call(np.exp, -(x * x)),
        _external(s.erf),
    )
    defunary(
        "erfc",
        s.erfc,
        lambda g, ans, x: g * (-2 / SQRT_PI) * _call(np.exp, -(x * x)),
        _external(s.erfc),
    )
    defunary("gammaln", s.gammaln, lambda g, ans, x: g * _call(s.digamma, x), _external(s.gammaln))
    defunary(
        "digamma",
        s.digamma,
        lambda g, ans, x: g * _call(s.polygamma, x, n=1),
        _external(s.digamma),
        keys=[s.psi],
    )
    # polygamma(n, x) with n a static integer: d/dx polygamma(n, x) = polygamma(n + 1, x)
    _external(s.polygamma)

    def polygamma(x, n):  # the inputs first, then the static n (how rules and tests call it)
        return s.polygamma(n, x)

    op = defop("polygamma", polygamma, "x", _polygamma_spelling, keys=[s.polygamma])
    op.params = (Param("n", "attr", NO_DEFAULT), Param("x"))  # as users call it
    adjoint(s.polygamma)(lambda g, ans, x, n: (g * _call(s.polygamma, x, n=n + 1),))
    tangent(s.polygamma)(lambda ts, ans, x, n: ts[0] * _call(s.polygamma, x, n=n + 1))

    defbinary(
        "xlogy",
        s.xlogy,
        lambda g, ans, x, y: (g * _call(np.log, y), g * x / y),
        _external(s.xlogy),
    )
    defbinary(
        "xlog1py",
        s.xlog1py,
        lambda g, ans, x, y: (g * _call(np.log1p, y), g * x / (1 + y)),
        _external(s.xlog1py),
    )

    # logsumexp(a, axis=None, keepdims=False): the weights b= and return_sign= are refused
    defop("logsumexp", s.logsumexp, "a, axis=None, keepdims=False", _external(s.logsumexp))

    def weights(ans, a, axis, keepdims):  # softmax of a over the reduced axes
        return _call(np.exp, a - _expand(ans, axis, keepdims))

    adjoint(s.logsumexp)(
        lambda g, ans, a, axis, keepdims: (
            _expand(g, axis, keepdims) * weights(ans, a, axis, keepdims),
        )
    )
    tangent(s.logsumexp)(
        lambda ts, ans, a, axis, keepdims: _call(
            np.sum, ts[0] * weights(ans, a, axis, keepdims), axis=axis, keepdims=keepdims
        )
    )

    defop("softmax", s.softmax, "x, axis=None", _external(s.softmax), same_shape=True)
    adjoint(s.softmax)(
        lambda g, ans, x, axis: (ans * (g - _call(np.sum, g * ans, axis=axis, keepdims=True)),)
    )
    tangent(s.softmax)(
        lambda ts, ans, x, axis: (
            ans * (ts[0] - _call(np.sum, ts[0] * ans, axis=axis, keepdims=True))
        )
    )
    defop("log_softmax", s.log_softmax, "x, axis=None", _external(s.log_softmax), same_shape=True)
    adjoint(s.log_softmax)(
        lambda g, ans, x, axis: (
            g - _call(np.exp, ans) * _call(np.sum, g, axis=axis, keepdims=True),
        )
    )
    tangent(s.log_softmax)(
        lambda ts, ans, x, axis: (
            ts[0] - _call(np.sum, _call(np.exp, ans) * ts[0], axis=axis, keepdims=True)
        )
    )


if special is not None:
    _register()
