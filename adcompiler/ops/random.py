"""Random draws: calls of a NumPy generator's methods, kept exactly as the source makes them.

``rng.standard_normal(x.shape)``, ``np.random.normal(mu, sigma)``, ``rs.randn(3)``: a
draw is a `draw` node (a method of a `Generator` or `RandomState` value: an argument,
a module global, or one made in the function by `np.random.default_rng(seed)`) or a
`draw_global` node (a function of `np.random`, the legacy global state). The generated
code makes the same call, with the same arguments, in the same order as the source, so
for a given state of the generator its values are the source's; the nodes carry
`Op.effect`: no pass removes, merges, moves, inlines, recomputes or folds one.

Derivatives (the gradient of the sampled objective, for the draws made):

- the draw's values have no derivative in the arguments that only say how many values
  or which distribution without a parameter (``size``, ``standard_normal``, ``random``),
  nor in any argument of a draw of integers (``integers``, ``poisson``, ``binomial``:
  piecewise constant);
- location-scale draws are differentiable in their parameters, by reparameterization:
  NumPy draws ``loc + scale * z`` with ``z`` from the same stream whatever ``loc`` and
  ``scale`` are (``normal``, ``laplace``, ``logistic``, ``gumbel``; ``uniform`` is
  ``low + (high - low) * u``, ``exponential`` is ``scale * e``, ``lognormal`` is
  ``exp(mean + sigma * z)``), so ``z`` is read back from the draw:
  ``d normal(loc, scale) / d scale = (ans - loc) / scale``;
- any other draw whose parameters carry a derivative (``gamma(shape)``, ``choice(x)``,
  ``permutation(x)``, ``multivariate_normal``) is refused with a located error.
"""

from __future__ import annotations

import ast

import numpy as np

from adcompiler import runtime
from adcompiler.ops.core import Op, Param, Refused, register

GENERATORS = (np.random.Generator, np.random.RandomState)

# The legacy global state behind `np.random.normal` and the other functions of np.random.
GLOBAL_STATE = np.random.mtrand._rand

# The parameters of the distributions that have a derivative, in order.
_LOC_SCALE = ("loc", "scale")
PARAMETERS = {
    "normal": _LOC_SCALE,
    "laplace": _LOC_SCALE,
    "logistic": _LOC_SCALE,
    "gumbel": _LOC_SCALE,
    "uniform": ("low", "high"),
    "exponential": ("scale",),
    "lognormal": ("mean", "sigma"),
}

# Draws with no derivative in any argument: no distribution parameter (only sizes, dtypes,
# bounds of integers), or integer values (piecewise constant in their parameters).
NO_DERIVATIVE = frozenset(
    {
        "random", "random_sample", "sample", "ranf", "rand", "randn", "standard_normal",
        "standard_exponential", "standard_cauchy", "bytes", "integers", "randint",
        "random_integers", "binomial", "poisson", "geometric", "hypergeometric",
        "negative_binomial", "multinomial", "multivariate_hypergeometric", "zipf",
        "logseries", "seed",
    }
)  # fmt: skip

# Draws whose parameters have a derivative that is not written here: refused if they do.
REFUSED = frozenset(
    {
        "beta", "chisquare", "dirichlet", "f", "gamma", "multivariate_normal",
        "noncentral_chisquare", "noncentral_f", "pareto", "power", "rayleigh",
        "standard_gamma", "standard_t", "triangular", "vonmises", "wald", "weibull",
        "choice", "permutation", "permuted",
    }
)  # fmt: skip

METHODS = frozenset(PARAMETERS) | NO_DERIVATIVE | REFUSED

# Methods that write into their argument or change a generator in ways a call does not show.
IN_PLACE = {
    "shuffle": "`x = rng.permutation(x)` (a new array) or `x = x[rng.permutation(len(x))]`",
    "set_state": "set the state before calling the function",
    "__setstate__": "set the state before calling the function",
}


def is_generator(obj) -> bool:
    return isinstance(obj, GENERATORS)


def is_global_function(fn) -> bool:
    """True for a function of `np.random` that draws from (or seeds) the global state."""
    name = getattr(fn, "__name__", None)
    return (name in METHODS or name in IN_PLACE) and getattr(np.random, name, None) is fn


# ---------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------


def _named(inputs, method: str, keywords: tuple) -> dict:
    """The draw's array inputs (after the generator) by parameter name (positional ones
    by their place in the signature); an input with no known name is under its index."""
    positional = len(inputs) - len(keywords)
    names = PARAMETERS.get(method, ())
    out = {names[k] if k < len(names) else k: x for k, x in enumerate(inputs[:positional])}
    out.update(zip(keywords, inputs[positional:]))
    return out


def _read_back(method: str, ans, p: dict) -> dict:
    """The derivative of a draw in each parameter, per unit of the draw, read back from
    the values drawn (NumPy's `loc + scale * z`: `z = (ans - loc) / scale`)."""
    if method == "uniform":
        low, high = p.get("low", 0.0), p.get("high", 1.0)
        u = (ans - low) / (high - low)
        return {"low": 1.0 - u, "high": u}
    if method == "exponential":
        return {"scale": ans / p.get("scale", 1.0)}
    if method == "lognormal":
        z = (ans.builder.call(np.log, ans) - p.get("mean", 0.0)) / p.get("sigma", 1.0)
        return {"mean": ans, "sigma": ans * z}
    loc, scale = p.get("loc", 0.0), p.get("scale", 1.0)
    return {"loc": 1.0, "scale": (ans - loc) / scale}


def _refusal(method: str) -> Refused:
    hint = {
        "choice": "pick with an index: `x[rng.integers(0, len(x), size=k)]`",
        "permutation": "permute with an index: `x[rng.permutation(len(x))]`",
        "permuted": "permute with an index: `x[rng.permutation(len(x))]`",
        "multivariate_normal": "draw `z = rng.standard_normal(n)` and use `mean + L @ z` "
        "with `L = np.linalg.cholesky(cov)`",
    }.get(method, "draw from a standard distribution and transform it in Python (for "
          "`normal`: `loc + scale * rng.standard_normal(size)`)")  # fmt: skip
    return Refused(
        f"the values of `{method}` have no derivative rule in its arguments here, and an "
        f"argument carries a derivative",
        hint,
    )


def _contributions(skip: int):
    """The adjoint rule of a draw whose first `skip` inputs are not arguments (the
    generator)."""

    def adjoint(g, ans, *inputs, method="", keywords=()):
        args = inputs[skip:]
        if method in NO_DERIVATIVE:
            return (None,) * len(inputs)
        if method not in PARAMETERS:
            return (None,) * skip + (_refusal(method),) * len(args)
        per = _read_back(method, ans, _named(args, method, keywords))
        names = list(_named(args, method, keywords))
        out = []
        for name, x in zip(names, args):
            d = per.get(name)
            if d is None:  # size, dtype: no derivative
                out.append(None)
                continue
            c = g if isinstance(d, float) and d == 1.0 else g * d
            out.append(c.builder.call(runtime.unbroadcast, c, x.shape))
        return (None,) * skip + tuple(out)

    return adjoint


def _tangent(skip: int):
    def tangent(ts, ans, *inputs, method="", keywords=()):
        args, tangents = inputs[skip:], ts[skip:]
        if method in NO_DERIVATIVE or all(t is None for t in tangents):
            return None
        if method not in PARAMETERS:
            raise _refusal(method).error(ans.builder.loc)
        per = _read_back(method, ans, _named(args, method, keywords))
        parts = []
        for name, t in zip(_named(args, method, keywords), tangents):
            d = per.get(name)
            if t is not None and d is not None:
                parts.append(t if isinstance(d, float) and d == 1.0 else t * d)
        if not parts:
            return None
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        return total

    return tangent


# ---------------------------------------------------------------------------
# Operators
# ---------------------------------------------------------------------------


def draw(generator, *args, method: str = "", keywords: tuple = ()):
    """What a `draw` node computes: ``generator.method(*positional, **keywords)``."""
    positional = len(args) - len(keywords)
    return getattr(generator, method)(*args[:positional], **dict(zip(keywords, args[positional:])))


def draw_global(*args, method: str = "", keywords: tuple = ()):
    """What a `draw_global` node computes: ``np.random.method(...)``."""
    return draw(GLOBAL_STATE, *args, method=method, keywords=keywords)


def _arguments(node, args) -> tuple[list, list]:
    keywords = node.attrs["keywords"]
    positional = len(args) - len(keywords)
    return list(args[:positional]), [
        ast.keyword(arg=k, value=v) for k, v in zip(keywords, args[positional:])
    ]


def _draw_spelling(node, args):
    positional, keywords = _arguments(node, args[1:])
    return ast.Call(ast.Attribute(args[0], node.attrs["method"], ast.Load()), positional, keywords)


def _global_spelling(node, args):
    positional, keywords = _arguments(node, args)
    np_random = ast.Attribute(ast.Name("np", ast.Load()), "random", ast.Load())
    method = ast.Attribute(np_random, node.attrs["method"], ast.Load())
    return ast.Call(method, positional, keywords)


_ATTRS = (Param("method", "attr", ""), Param("keywords", "attr", ()))

DRAW = register(
    Op(
        "draw",
        draw,
        (Param("generator"), Param("args", "varargs"), *_ATTRS),
        _draw_spelling,
        adjoint=_contributions(1),
        tangent=_tangent(1),
        unique=True,
        effect=True,
    )
)
DRAW_GLOBAL = register(
    Op(
        "draw_global",
        draw_global,
        (Param("args", "varargs"), *_ATTRS),
        _global_spelling,
        adjoint=_contributions(0),
        tangent=_tangent(0),
        unique=True,
        effect=True,
    )
)


def _new_generator(name: str, fn, param: str = "seed", default=None) -> Op:
    return register(
        Op(
            name,
            fn,
            (Param(param, "in", default),),
            f"np.random.{fn.__name__}",
            nondiff=True,
            unique=True,
            effect=True,
        )
    )


# Generators made in the function (`rng = np.random.default_rng(0)`): a new one per call.
NEW_GENERATORS = (
    _new_generator("default_rng", np.random.default_rng),
    _new_generator("RandomState", np.random.RandomState),
)
