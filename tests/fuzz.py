"""A differential random-program fuzzer for adcompiler (issue 12, "never silently wrong").

    python tests/fuzz.py --programs 200 --seed 1 [--jobs 2] [--mode grad ...] [--out DIR]
    PYTHONPATH=/work/main python tests/fuzz.py ...     # fuzz another checkout
    python tests/fuzz.py --show 17 --seed 1            # print one program

Same (seed, index), same program. SIGTERM or Ctrl-C ends a batch early with its summary;
`--log FILE` appends every outcome that is not `correct`, one JSON object a line.

A seeded generator writes random programs over the supported subset (docs/subset.md,
docs/operators.md) as source text: a top-level function `f` returning a scalar, its twin
`fj` returning an array (same body, for `jacobian`), helper functions in the same module
and in a second one. The programs are written to real files and imported, so adcompiler
reads their source as it reads a user's.

Each program is differentiated in every mode (`grad`, `value_and_grad`, `jvp`, `hvp`,
`jacobian` in reverse and forward mode) and called in a sequence that exercises
specialization: the same shapes three times, the same shapes with other data, new
shapes, the first shapes again, scalars as Python floats, 0-d arrays and `np.float64`,
arrays of an ndarray subclass (with the same and with new shapes) and np.memmap slices.
About 3% of the programs start with a construct that must be refused (a write into an
argument, `try`, `global`, a set, ...). Every call is compared with float64 central
differences of the plain function (directional derivatives along random directions;
`hvp` against a mixed second difference) and the value with the function's value.

Outcomes, per program and mode:

- correct: every call agrees with finite differences;
- refused: an adcompiler error (adcompiler/errors.py) at compile time, i.e. when the
  transform is made or at the first call, before any generated code ran;
- crash: any other exception (or a refusal only on a later call) where the function
  itself runs, or the per-program time limit passed;
- wrong: a value, derivative or shape that disagrees, the caller's arguments written to,
  or a program that must be refused accepted (one whose plain function writes into its
  arguments counts as such);
- invalid: the plain function fails on every data draw (a generator bug; should be 0).

Data points where the finite differences are unreliable (a branch threshold or a kink
within the step: the one-sided differences disagree) or where the plain function meets an
invalid value or overflows are re-drawn.

A failure is minimized (statements deleted, expressions replaced by a sub-expression,
while the same outcome in the same mode persists) and printed, with a self-contained
script that reproduces it (`--out DIR` writes one per failure).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import io
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # last: PYTHONPATH=<another checkout> fuzzes that one
    sys.path.append(ROOT)

import adcompiler as ad  # noqa: E402
from adcompiler import errors as ad_errors  # noqa: E402

MODES = ("grad", "value_and_grad", "jvp", "hvp", "jacobian", "jacobian_fwd")
REFUSALS = (
    ad_errors.UnsupportedSyntaxError,
    ad_errors.SourceUnavailableError,
    ad_errors.DifferentiationTypeError,
    ad_errors.WrtError,
)

# ----------------------------------------------------------------------------------------
# The generator
# ----------------------------------------------------------------------------------------

# Types of values, over two symbolic dimensions m and n (each 2..5 at run time):
# S scalar, N vector of n, M vector of m, MN matrix m x n, I a Python int.
S, N, M, MN, INT = "S", "N", "M", "MN", "I"

UNARY = [
    "np.tanh({})",
    "np.sin({})",
    "np.cos({})",
    "np.arctan({})",
    "np.exp(np.tanh({}))",
    "np.logaddexp(0.0, {})",
    "np.sqrt(1.0 + np.square({}))",
    "np.log(1.0 + np.square({}))",
    "np.log1p(np.square({}))",
    "np.exp(-np.square({}))",
    "np.expm1(np.tanh({}))",
    "np.sinh(np.tanh({}))",
    "np.cosh(np.tanh({}))",
    "np.arcsin(0.9 * np.tanh({}))",
    "np.arccos(0.9 * np.tanh({}))",
    "np.tan(0.5 * np.tanh({}))",
    "np.reciprocal(1.5 + np.cos({}))",
    "np.square({})",
    "np.abs({})",
    "np.negative({})",
    "-{}",
    "+{}",
    "{} ** 2",
    "np.power(np.tanh({}), 3)",
    "np.clip({}, -0.8, 0.8)",
    "np.maximum({}, 0.1)",
    "np.minimum({}, -0.2)",
    "(1.0 + np.square({})) ** 1.5",
    "np.sign({}) * 0.5",
]
BINARY = [
    "{} + {}",
    "{} - {}",
    "{} * {}",
    "{} / (1.0 + np.square({}))",
    "np.add({}, {})",
    "np.subtract({}, {})",
    "np.multiply({}, {})",
    "np.divide({}, 2.0 + np.cos({}))",
    "np.maximum({}, {})",
    "np.minimum({}, {})",
    "np.logaddexp({}, {})",
    "np.arctan({} * {})",
    "{} % 7.5 + 0.1 * {}",
    "np.power(1.0 + np.square({}), np.tanh({}))",
    "{} * ({} // 2.0)",
]
# The operator table (docs/operators.md) beyond the basics above, by result type: a
# template and the types of its operands (`{0}`, `{1}`: fresh sub-expressions; `{n0}`: a
# variable named twice). Arguments are kept inside each function's domain and away from
# its kinks where that is cheap; the runner redraws data where differences are unreliable.
TABLE = {
    N: [
        ("np.exp2(np.tanh({0}))", [N]),
        ("np.log2(1.0 + np.square({0}))", [N]),
        ("np.log10(1.0 + np.square({0}))", [N]),
        ("np.cbrt(2.0 + np.cos({0}))", [N]),
        ("np.arcsinh({0})", [N]),
        ("np.arccosh(1.5 + np.square({0}))", [N]),
        ("np.arctanh(0.9 * np.tanh({0}))", [N]),
        ("np.arctan2({0}, 1.5 + np.cos({1}))", [N, N]),
        ("np.hypot({0}, 0.5 + np.square({1}))", [N, N]),
        ("np.fmax({0}, {1})", [N, N]),
        ("np.fmin({0}, 0.1)", [N]),
        ("np.logaddexp2({0}, {1})", [N, N]),
        ("np.sinc({0})", [N]),
        ("np.fabs({0})", [N]),
        ("np.deg2rad({0})", [N]),
        ("np.rad2deg(0.01 * {0})", [N]),
        ("np.degrees(0.01 * {0})", [N]),
        ("np.radians({0})", [N]),
        ("np.copysign({0}, {1})", [N, N]),
        ("np.ldexp({0}, 2)", [N]),
        ("np.float_power(1.0 + np.square({0}), 1.5)", [N]),
        ("np.fmod({0}, 2.5)", [N]),
        ("np.remainder({0}, 2.5)", [N]),
        ("np.nan_to_num({0})", [N]),
        ("np.modf({0})[0]", [N]),
        ("np.roll({0}, 1)", [N]),
        ("np.flip({0})", [N]),
        ("np.sort({0})", [N]),
        ("np.cumprod(np.tanh({0}))", [N]),
        ("np.append({n0}[1:], {0}[:1])", [N]),
        ("np.pad({n0}, (1, 2))[1:len({n0}) + 1] * {0}", [N]),
        ("np.atleast_1d({0})", [N]),
        ("np.take({n0}, np.arange(len({n0}))[::-1]) + {0}", [N]),
        ("np.where({0} > 0.3, np.tanh({1}), {2})", [N, N, N]),
        ("np.square({0}) / (1.0 + np.var({1}))", [N, N]),
        ("np.true_divide({0}, 2.0 + np.cos({1}))", [N, N]),
        ("np.pow(1.0 + np.square({0}), 1.5)", [N]),
        ("np.mod({0}, 2.5)", [N]),
        ("np.positive({0})", [N]),
        ("np.absolute({0})", [N]),
        ("np.asin(0.9 * np.tanh({0}))", [N]),
        ("np.acos(0.9 * np.tanh({0}))", [N]),
        ("np.atan({0})", [N]),
        ("np.atan2({0}, 1.5 + np.cos({1}))", [N, N]),
        ("np.asinh({0})", [N]),
        ("np.acosh(1.5 + np.square({0}))", [N]),
        ("np.atanh(0.9 * np.tanh({0}))", [N]),
        ("np.nextafter({0}, 10.0)", [N]),
        ("np.divmod({0}, 2.5)[1]", [N]),
        ("np.full_like({n0}, 0.5) * {0}", [N]),
        ("np.asanyarray({0})", [N]),
        ("np.concat([{n0}[1:], {n0}[:1]]) * {0}", [N]),
        ("np.cumulative_sum({0})", [N]),
        ("np.cumulative_prod(np.tanh({0}))", [N]),
        ("np.real({0})", [N]),
        ("np.hsplit({0}, 1)[0]", [N]),
        ("np.vecmat({0}, {1})", [M, MN]),
    ],
    M: [
        ("np.tensordot({0}, {1}, axes=1)", [MN, N]),
        ("np.ptp({0}, axis=1)", [MN]),
        ("np.var({0}, axis=1)", [MN]),
        ("np.std(1.0 + np.square({0}), axis=1)", [MN]),
        ("np.column_stack([{0}, {1}]).sum(axis=1)", [M, M]),
        ("np.fliplr({0})[:, 0]", [MN]),
        ("np.flipud({0}) @ {1}", [MN, N]),
        ("np.rot90({0}, 2) @ {1}", [MN, N]),
        ("np.triu({0}) @ {1}", [MN, N]),
        ("np.tril({0}, -1) @ {1}", [MN, N]),
        ("np.diff({0}, axis=1)[:, 0]", [MN]),
        ("np.linalg.vector_norm(1.0 + np.square({0}), axis=1)", [MN]),
        ("np.take_along_axis({0}, np.zeros(({n0}.shape[0], 1), dtype=int) + "
         "np.argmax({n0}, axis=1)[:, None], axis=1)[:, 0]", [MN]),
        ("np.matvec({0}, {1})", [MN, N]),
        ("np.linalg.matmul({0}, {1})", [MN, N]),
        ("np.dstack([{0}, {1}])[0, :, 0]", [M, M]),
    ],
    MN: [
        ("np.moveaxis({0}.T, 0, 1)", [MN]),
        ("np.rot90(np.rot90({0}))", [MN]),
        ("np.flipud({0})", [MN]),
        ("np.kron({0}, np.ones((1, 1)))", [MN]),
        ("np.sort({0}, axis=1)", [MN]),
        ("np.roll({0}, 1, axis=0)", [MN]),
        ("np.vstack(np.split({0}, 1))", [MN]),
        ("np.atleast_2d({0})", [MN]),
        ("np.diff(np.concatenate([np.zeros((1, {n0}.shape[1])), {n0}]), axis=0) * {0}", [MN]),
        ("np.tril({0}) + np.triu({1}, 1)", [MN, MN]),
        ("np.outer({0}, {1}) * np.exp2(-np.square({2}))", [M, N, MN]),
        ("np.permute_dims({0}.T, (1, 0))", [MN]),
        ("np.rollaxis({0}.T, 1)", [MN]),
        ("np.atleast_3d({0})[:, :, 0]", [MN]),
        ("np.matrix_transpose({0}.T)", [MN]),
        ("np.linalg.matrix_transpose({0}.T)", [MN]),
        ("np.vsplit({0}, 1)[0]", [MN]),
        ("np.dsplit(np.atleast_3d({0}), 1)[0][:, :, 0]", [MN]),
        ("np.broadcast_to({0}, np.shape({n0}))", [MN]),
    ],
    S: [
        ("np.var({0})", [N]),
        ("np.std(1.0 + np.square({0}))", [N]),
        ("np.ptp({0})", [N]),
        ("np.amax({0})", [N]),
        ("np.nansum({0})", [N]),
        ("np.nanmax({0})", [N]),
        ("np.nanmean({0})", [N]),
        ("np.inner({0}, {1})", [N, N]),
        ("np.tensordot({0}, {1}, axes=1)", [N, N]),
        ("np.sum(np.kron({0}, np.array([1.0, -0.5])))", [N]),
        ("np.sum(np.diff({0}))", [N]),
        ("np.sum(np.diff({0}, n=2))", [N]),
        ("np.sum(np.sort({0})[:2])", [N]),
        ("np.sum(np.lib.stride_tricks.sliding_window_view({0}, 2) ** 2)", [N]),
        ("np.sum(np.array_split({0}, 2)[0])", [N]),
        ("np.sum(np.atleast_2d({0}))", [N]),
        ("np.linalg.vector_norm({0})", [N]),
        ("np.linalg.norm({0}, 1)", [N]),
        ("np.linalg.norm({0}, np.inf)", [N]),
        ("np.vecdot({0}, {1})", [N, N]),
        ("np.sum(np.cumsum({0}) * {1})", [N, N]),
        ("np.sum(np.diagonal({0}))", [MN]),
        ("np.sum(np.diag({0}))", [MN]),
        ("np.linalg.norm({0}, 'fro')", [MN]),
        ("np.linalg.matrix_norm({0})", [MN]),
        ("np.sum(np.linalg.svd({0}, compute_uv=False))", [MN]),
        ("np.sum(np.linalg.svdvals({0}))", [MN]),
        ("np.linalg.slogdet(np.eye(len({n0})) + 0.1 * np.outer({n0}, {0}))[1]", [M]),
        ("np.sum(np.linalg.cholesky(np.eye(len({n0})) + 0.1 * np.outer({n0}, {n0})))", [M]),
        ("np.sum(np.linalg.eigvalsh(np.outer({n0}, {n0}) + np.diag(np.arange(len({n0})) * 1.0)))",
         [M]),
        ("np.sum(np.linalg.eigh(np.outer({n0}, {n0}) + np.diag(np.arange(len({n0})) * 1.0))[0])",
         [M]),
        ("np.sum(np.linalg.pinv({0}) ** 2)", [MN]),
        ("np.sum(np.abs(np.linalg.qr({n0} @ {n0}.T + np.eye(len({n0})))[1]))", [MN]),
        ("np.sum(np.linalg.matrix_power({n0} @ {n0}.T, 2))", [MN]),
        ("np.sum(np.linalg.inv({n0} @ {n0}.T + np.eye(len({n0}))))", [MN]),
        ("np.trace(np.tril({0}))", [MN]),
        ("np.min({0})", [N]),
        ("np.amin({0})", [N]),
        ("np.nanmin({0})", [N]),
        ("np.matmul({0}, {1})", [N, N]),
        ("np.sum(np.full((3,), {0}))", [S]),
        ("np.sum(np.cross(np.array([{n0}[0], {n0}[1], 1.0]), np.array([0.5, {0}[0], {0}[-1]])))",
         [N]),
    ],
}
if importlib.util.find_spec("scipy") is not None:
    TABLE[N] += [
        ("scipy.special.expit({0})", [N]),
        ("scipy.special.logit(0.1 + 0.8 * scipy.special.expit({0}))", [N]),
        ("scipy.special.erf({0})", [N]),
        ("scipy.special.erfc({0})", [N]),
        ("scipy.special.gammaln(1.5 + np.square({0}))", [N]),
        ("scipy.special.digamma(1.5 + np.square({0}))", [N]),
        ("scipy.special.xlogy({0}, 1.0 + np.square({1}))", [N, N]),
        ("scipy.special.xlog1py({0}, np.square({1}))", [N, N]),
        ("scipy.special.softmax({0})", [N]),
        ("scipy.special.log_softmax({0})", [N]),
        ("scipy.special.psi(1.5 + np.square({0}))", [N]),
        ("scipy.special.polygamma(1, 1.5 + np.square({0}))", [N]),
    ]
    TABLE[S] += [("scipy.special.logsumexp({0})", [N])]

FAMILIES = (
    "arith", "ufunc", "reduce", "matmul", "index", "slice", "if", "ifexp", "for", "while",
    "break", "continue", "return", "tuple", "list", "dict", "helper", "helper2", "inplace",
    "view", "compr", "linalg", "refuse", "lambda", "closure", "effect", "tiny", "table",
)  # fmt: skip


@dataclass
class Program:
    seed: int
    index: int
    sources: dict  # module name -> source text; the first is the main module
    params: list  # [(name, type)]
    wrt: tuple  # names
    out_type: str  # the type fj returns
    must_refuse: bool = False
    families: set = field(default_factory=set)

    @property
    def main(self) -> str:
        return next(iter(self.sources))


def atomic(text: str) -> str:
    """`text`, parenthesized unless it is a name, call, attribute, subscript or number."""
    node = ast.parse(text, mode="eval").body
    if isinstance(node, (ast.Name, ast.Call, ast.Attribute, ast.Subscript)):
        return text
    if isinstance(node, ast.Constant) and not text.startswith("-"):
        return text
    return f"({text})"


class NoType(Exception):
    """No value of a type can be made from the variables in scope (a helper's)."""


class Scope:
    def __init__(self, parent: Scope | None = None):
        self.vars = dict(parent.vars) if parent else {}
        self.containers = dict(parent.containers) if parent else {}
        self.loops = list(parent.loops) if parent else []  # [(index name, dim or None)]
        self.params = set(parent.params) if parent else set()


class Gen:
    """Writes one program; deterministic for a given random.Random."""

    def __init__(self, rng: random.Random, tag: str):
        self.r = rng
        self.tag = tag
        self.counter = 0
        self.families: set = set()
        self.helpers: list = []  # (call prefix, name, param types, defaults, return type)
        self.types = [S, N]
        self.in_second_module = False

    # -- names and small pieces
    def fresh(self, stem: str = "v") -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def const(self) -> str:
        return self.r.choice(["0.5", "1.5", "(-0.7)", "0.3", "2.0", "(-1.2)", "SCALE"])

    def dim_of(self, t: str) -> str | None:
        return {N: "n", M: "m"}.get(t)

    def vars_of(self, sc: Scope, t: str) -> list:
        return [v for v, vt in sc.vars.items() if vt == t]

    def pick(self, items, weights=None):
        return self.r.choices(items, weights=weights)[0] if weights else self.r.choice(items)

    # -- expressions
    def leaf(self, sc: Scope, t: str) -> str:
        r = self.r
        names = self.vars_of(sc, t)
        opts = []
        if names:
            opts += [lambda: r.choice(names)] * 4
        for name, (kind, info) in sc.containers.items():
            if kind == "tuple":
                for k, et in enumerate(info):
                    if et == t:
                        opts.append(lambda name=name, k=k: f"{name}[{k}]")
            elif kind == "list" and info[0] == t:
                opts.append(lambda name=name, n=info[1]: f"{name}[{r.randrange(n)}]")
            elif kind == "dict" and info[0] == t:
                opts.append(lambda name=name, keys=info[1]: f'{name}["{r.choice(keys)}"]')
                opts.append(lambda name=name, keys=info[1]: f'{name}.get("{r.choice(keys)}", 0.5)')
        if t == S:
            opts += [self.const] * 2
            for i, dim in sc.loops:
                opts.append(lambda i=i: f"0.1 * {i}")
                for v, vt in sc.vars.items():
                    if dim is not None and self.dim_of(vt) == dim:
                        opts.append(lambda v=v, i=i: f"{v}[{i}]")
        if not opts:
            return self.derived(sc, t)
        return r.choice(opts)()

    def derived(self, sc: Scope, t: str) -> str:
        """A value of type `t` made (without recursion) from a variable of another type."""
        have = {vt: v for v, vt in reversed(list(sc.vars.items()))}
        if t == N and MN in have:
            return f"{have[MN]}[0]"
        if t == M and MN in have:
            return f"{have[MN]}[:, 0]"
        if t == MN and M in have and N in have:
            return f"np.outer({have[M]}, {have[N]})"
        raise NoType(t)

    def ex(self, sc: Scope, t: str, d: int) -> str:
        if d <= 0 or self.r.random() < 0.2:
            return self.leaf(sc, t)
        return self.build(sc, t, d)

    def cond(self, sc: Scope, d: int = 1) -> str:
        r = self.r
        c = r.choice(["0.0", "0.3", "-0.3", "0.8", "-1.0"])
        k = r.random()
        if k < 0.45:
            return f"{self.ex(sc, S, d)} > {c}"
        if k < 0.6:
            return f"np.sum({self.ex(sc, N, d)}) < {c}"
        if k < 0.7:
            return f"-0.5 < {self.ex(sc, S, d)} < 0.5"
        if k < 0.8:
            return f"{self.ex(sc, S, d)} > {c} and {self.ex(sc, S, 0)} < 1.0"
        if k < 0.87:
            return f"not {self.ex(sc, S, d)} > {c}"
        if k < 0.94:
            return f"{self.ex(sc, S, d)} < {c} or {self.ex(sc, S, 0)} > 0.9"
        return f"np.max({self.ex(sc, N, d)}) > {c}"

    def build(self, sc: Scope, t: str, d: int) -> str:
        r, e = self.r, lambda tt, dd=d - 1: self.ex(sc, tt, dd)
        f = self.families
        opts: list = []  # (weight, family, thunk)

        def add(w, fam, thunk):
            opts.append((w, fam, thunk))

        add(4, "ufunc", lambda: r.choice(UNARY).format(e(t)))
        add(4, "arith", lambda: r.choice(BINARY).format(e(t), e(t)))
        if t != S:
            add(2, "arith", lambda: r.choice(BINARY[:4]).format(e(t), e(S)))
            add(1, "arith", lambda: r.choice(BINARY[:3]).format(e(S), e(t)))
            add(1, "ufunc", lambda: f"np.where({e(t, 0)} > 0.0, {e(t)}, 0.3 * {e(t)})")
        add(1, "ifexp", lambda: f"({e(t)} if {self.cond(sc, 0)} else {e(t)})")
        table = [(tpl, ts) for tpl, ts in TABLE.get(t, []) if set(ts) <= set(self.types)]
        if table:
            add(3, "table", lambda: self.from_table(sc, r.choice(table), d))
        for pre, name, ptypes, defaults, rt in self.helpers:
            if self.in_second_module:
                if not pre:
                    continue  # the second module does not import the first
                pre = ""
            if rt == t and set(ptypes) <= set(self.types):
                fam = "helper2" if pre else "helper"

                def call(pre=pre, name=name, ptypes=ptypes, defaults=defaults):
                    args = [e(pt) for pt in ptypes]
                    if defaults and r.random() < 0.5:
                        args.append(f"c={e(S, 0)}")
                    return f"{pre}{name}({', '.join(args)})"

                add(3, fam, call)
        if t == S:
            reductions = ["np.sum", "np.mean", "np.max", "np.min"]
            add(3, "reduce", lambda: f"{r.choice(reductions)}({e(N)})")
            add(1, "reduce", lambda: f"{e(N)}.{r.choice(['sum', 'mean', 'max', 'min'])}()")
            add(1, "reduce", lambda: f"np.prod(np.tanh({e(N)}))")
            add(1, "reduce", lambda: f"np.sum(np.cumsum({e(N)}))")
            add(1, "linalg", lambda: f"np.linalg.norm({e(N)})")
            add(2, "matmul", lambda: f"{e(N)} @ {e(N)}")
            add(1, "matmul", lambda: f"np.dot({e(N)}, {e(N)})")
            add(1, "matmul", lambda: f"np.vdot({e(N)}, {e(N)})")
            add(1, "matmul", lambda: f"np.einsum('i,i->', {e(N)}, {e(N)})")
            add(2, "index", lambda: f"{e(N)}[{r.choice(['0', '1', '-1'])}]")
            add(1, "index", lambda: f"np.sum({e(N)}[[0, 1, 0]])")
            add(1, "index", lambda: f"np.sum({e(N, 0)}[{e(N, 0)} > 0.2])")
            add(1, "slice", lambda: f"np.sum({e(N)}[{r.choice(['1:', ':-1', '::2', '::-1'])}])")
            add(1, "arith", lambda: f"abs({e(S)})")
            add(1, "arith", lambda: f"{r.choice(['max', 'min'])}({e(S)}, {e(S)})")
            add(1, "arith", lambda: f"float({e(S)})")
            add(1, "list", lambda: f"np.sum(np.array([{e(S)}, {e(S)}, 0.5]) ** 2)")
            add(1, "list", lambda: f"sum([{e(S)}, {e(S)}])")
            add(1, "compr", lambda: f"sum(np.sin(u) for u in {e(N, 0)})")
            if MN in self.types:
                add(1, "reduce", lambda: f"np.sum({e(MN)})")
                add(1, "reduce", lambda: f"np.trace({e(MN)})")
                add(1, "index", lambda: f"{e(MN)}[{r.choice(['0, 1', '-1, 0', '1, -1'])}]")
                add(1, "reduce", lambda: f"np.max({e(MN)})")
                add(1, "linalg", lambda: f"np.linalg.norm({e(MN)})")
                add(1, "linalg", lambda: "np.linalg.det(np.eye({0}.shape[0]) + 0.1 * ({0} @ {0}.T))"
                    .format(self.named(sc, MN)))  # fmt: skip
        if t == N:
            add(1, "reduce", lambda: f"np.cumsum({e(N)})")
            add(1, "slice", lambda: f"{e(N)}[::-1]")
            add(1, "slice", lambda: f"np.concatenate([{e(N, 0)}[1:], {e(N, 0)}[:1]])")
            add(1, "ufunc", lambda: f"np.clip({e(N)}, -0.8, 0.8)")
            add(1, "view", lambda: f"{e(N)}.reshape(-1)")
            add(1, "view", lambda: f"np.reshape({e(N)}, (-1,))")
            add(1, "view", lambda: f"np.squeeze({e(N)}[None, :])")
            add(1, "view", lambda: f"np.expand_dims({e(N)}, 0)[0]")
            add(1, "slice", lambda: "np.tile({0}, 2)[:len({0})]".format(self.named(sc, N)))
            add(1, "slice", lambda: f"np.repeat({e(N)}, 2)[::2]")
            add(1, "list", lambda: f"np.stack([{e(N)}, {e(N)}])[1]")
            add(1, "list", lambda: f"np.vstack([{e(N)}, {e(N)}]).sum(axis=0)")
            add(1, "list", lambda: f"np.hstack([{e(N, 0)}[:1], {e(N, 0)}[1:]])")
            add(1, "arith", lambda: f"{e(N)} * np.arange(len({e(N, 0)}))")
            add(1, "arith", lambda: f"{e(N)} + np.ones_like({e(N, 0)})")
            add(1, "view", lambda: f"{e(N)}.copy()")
            add(1, "view", lambda: f"{e(N)}.astype(float)")
            if MN in self.types:
                add(2, "matmul", lambda: f"{e(MN)}.T @ {e(M)}")
                add(1, "matmul", lambda: f"{e(M)} @ {e(MN)}")
                add(1, "matmul", lambda: f"np.dot({e(M)}, {e(MN)})")
                add(1, "matmul", lambda: f"np.einsum('ij,i->j', {e(MN)}, {e(M)})")
                add(1, "reduce", lambda: f"np.{r.choice(['sum', 'mean', 'max'])}({e(MN)}, axis=0)")
                add(1, "index", lambda: f"{e(MN)}[{r.choice(['0', '-1', '1, :'])}]")
        if t == M:
            add(2, "matmul", lambda: f"{e(MN)} @ {e(N)}")
            add(1, "matmul", lambda: f"{e(MN)}.dot({e(N)})")
            add(1, "matmul", lambda: f"np.einsum('ij,j->i', {e(MN)}, {e(N)})")
            add(1, "reduce", lambda: f"np.{r.choice(['sum', 'mean', 'min'])}({e(MN)}, axis=1)")
            add(1, "index", lambda: f"{e(MN)}[:, {r.choice(['0', '1', '-1'])}]")
            add(1, "reduce", lambda: f"np.cumsum({e(M)})")
            add(1, "slice", lambda: f"{e(M)}[::-1]")
            inv = "np.linalg.inv(2.0 * np.eye(len({0})) + 0.1 * np.outer({0}, {0})) @ {1}"
            add(1, "linalg", lambda: inv.format(self.named(sc, M), e(M)))
            solve = "np.linalg.solve(2.0 * np.eye(len({0})) + 0.1 * np.outer({0}, {0}), {1})"
            add(1, "linalg", lambda: solve.format(self.named(sc, M), e(M)))
        if t == MN:
            add(2, "matmul", lambda: f"np.outer({e(M)}, {e(N)})")
            add(1, "arith", lambda: f"{e(M, 0)}[:, None] * {e(N)}")
            add(1, "arith", lambda: f"{e(MN)} + {e(N)}")
            add(1, "reduce", lambda: f"np.cumsum({e(MN)}, axis=1)")
            add(1, "view", lambda: f"{e(MN)}.T.T")
            add(1, "view", lambda: f"np.transpose({e(MN)}.T)")
            add(1, "view", lambda: f"np.swapaxes({e(MN)}.T, 0, 1)")
            add(1, "view", lambda: "{0}.reshape({0}.shape)".format(self.named(sc, MN)))
            add(1, "slice", lambda: f"{e(MN)}[:, ::-1]")
        while opts:
            k = self.r.choices(range(len(opts)), weights=[o[0] for o in opts])[0]
            w, fam, thunk = opts.pop(k)
            try:
                text = thunk()
            except NoType:
                continue
            f.add(fam)
            return atomic(text)
        raise NoType(t)

    def from_table(self, sc: Scope, entry: tuple, d: int) -> str:
        """An expression of the operator table: `{k}` a sub-expression, `{n0}` a variable
        (or leaf) of the first operand's type, named where the template repeats it."""
        template, types = entry
        args = [self.ex(sc, t, d - 1) for t in types]
        return template.format(*args, n0=self.named(sc, types[0]))

    def named(self, sc: Scope, t: str) -> str:
        names = self.vars_of(sc, t)
        return self.r.choice(names) if names else f"({self.leaf(sc, t)})"

    # -- statements
    def block(self, sc: Scope, k: int, d: int, ctx: dict, ind: str) -> list:
        out: list = []
        for _ in range(k):
            saved = (dict(sc.vars), dict(sc.containers))
            try:
                out += self.stmt(sc, d, ctx, ind)
            except NoType:
                sc.vars, sc.containers = saved
        return out or [ind + "pass"]

    def assign_types(self):
        return self.r.choice(self.types)

    def stmt(self, sc: Scope, d: int, ctx: dict, ind: str) -> list:
        r = self.r
        choices = ["assign"] * 6 + ["reassign"] * 3 + ["aug"] * 2
        if d > 0:
            choices += ["if"] * 2 + ["for"] * 2 + ["while", "inplace", "containers", "iter"]
            if ctx.get("main"):
                choices += ["ret"]
        if ctx.get("loop"):
            choices += ["break", "continue"]
        if ctx.get("main"):
            choices += ["closure", "effect"]
        kind = r.choice(choices)
        ex = lambda t, dd=2: self.ex(sc, t, dd)  # noqa: E731
        if kind == "assign":
            t = self.assign_types()
            name = self.fresh()
            line = f"{ind}{name} = {ex(t)}"
            sc.vars[name] = t
            return [line]
        if kind == "reassign":
            names = [v for v, vt in sc.vars.items() if vt != INT]
            if not names:
                return []
            name = r.choice(names)
            return [f"{ind}{name} = {ex(sc.vars[name])}"]
        if kind == "aug":
            names = [v for v, vt in sc.vars.items() if vt == S and v not in sc.params]
            if not names:
                return []
            name = r.choice(names)
            self.families.add("arith")
            return [f"{ind}{name} {r.choice(['+=', '-=', '*='])} {ex(S, 1)}"]
        if kind == "if":
            return self.if_stmt(sc, d, ctx, ind)
        if kind == "for":
            return self.for_stmt(sc, d, ctx, ind)
        if kind == "iter":
            return self.iter_stmt(sc, d, ctx, ind)
        if kind == "while":
            return self.while_stmt(sc, d, ctx, ind)
        if kind == "inplace":
            return self.inplace_stmt(sc, d, ctx, ind)
        if kind == "containers":
            return self.container_stmt(sc, ctx, ind)
        if kind == "ret":
            self.families.add("return")
            return [f"{ind}if {self.cond(sc)}:", f"{ind}    return {self.ret(sc, ctx)}"]
        if kind == "closure":
            return self.closure_stmt(sc, ind)
        if kind == "effect":
            self.families.add("effect")
            if self.r.random() < 0.5:
                shown = self.ex(sc, S, 1)
                if '"' in shown and "'" in shown:  # no quote left for the f-string
                    return [f'{ind}print("value", format({shown}, ".3f"))']
                # Before Python 3.12 an f-string cannot hold its own quote (`ls["b"]`)
                q = "'" if '"' in shown else '"'
                return [f"{ind}print(f{q}value {{{shown}:.3f}}{q})"]
            return [f"{ind}assert {self.named(sc, N)}.shape[0] > 0, \"empty\""]
        if kind in ("break", "continue"):
            self.families.add(kind)
            return [f"{ind}if {self.cond(sc)}:", f"{ind}    {kind}"]
        return []

    def closure_stmt(self, sc: Scope, ind: str) -> list:
        """A lambda, or a nested def reading a variable of the enclosing function."""
        r = self.r
        t = r.choice(self.types)
        name, out = self.fresh("fn"), self.fresh()
        if r.random() < 0.5:
            self.families.add("lambda")
            lines = [f"{ind}{name} = lambda r: {r.choice(UNARY).format('r')}"]
        else:
            self.families.add("closure")
            free = self.ex(sc, S, 0)
            fn = r.choice(UNARY).format("r")
            lines = [f"{ind}def {name}(r):", f"{ind}    return {fn} * {free}"]
        lines.append(f"{ind}{out} = {name}({self.ex(sc, t, 1)})")
        sc.vars[out] = t
        return lines

    def final(self, sc: Scope, ctx: dict) -> str:
        """The last return: reads some of the values computed, so they are not dead code."""
        made = [v for v, t in sc.vars.items() if t in (S, N, M, MN) and v not in sc.params]
        terms = [self.ex(sc, ctx["out"], 2)]
        for v in self.r.sample(made, min(len(made), self.r.choice([1, 2, 3]))):
            terms.append(f"0.1 * {v}" if sc.vars[v] == S else f"0.1 * np.mean({v})")
        return f"@RET({' + '.join(terms)})"

    def ret(self, sc: Scope, ctx: dict) -> str:
        return f"@RET({self.ex(sc, ctx['out'], 2)})"

    def merge(self, sc: Scope, branches: list) -> None:
        """Names defined (with one type) in every branch become visible after them."""
        common = set(branches[0].vars) - set(sc.vars)
        for b in branches[1:]:
            common &= {v for v in b.vars if b.vars[v] == branches[0].vars.get(v)}
        for v in sorted(common, key=lambda s: int(re.sub(r"\D", "", s) or 0)):
            if branches[0].vars[v] != INT:
                sc.vars[v] = branches[0].vars[v]

    def if_stmt(self, sc: Scope, d: int, ctx: dict, ind: str) -> list:
        self.families.add("if")
        r = self.r
        n_branches = r.choice([1, 2, 2, 3])
        # a name every branch defines, so it is defined after the `if`
        t = self.assign_types()
        target = self.fresh()
        lines, scopes = [], []
        for k in range(n_branches):
            head = "if" if k == 0 else "elif"
            lines.append(f"{ind}{head} {self.cond(sc)}:")
            b = Scope(sc)
            lines += self.block(b, r.randint(0, 2), d - 1, ctx, ind + "    ")
            lines.append(f"{ind}    {target} = {self.ex(b, t, 2)}")
            b.vars[target] = t
            scopes.append(b)
        lines.append(f"{ind}else:")
        b = Scope(sc)
        lines += self.block(b, r.randint(0, 1), d - 1, ctx, ind + "    ")
        lines.append(f"{ind}    {target} = {self.ex(b, t, 2)}")
        b.vars[target] = t
        scopes.append(b)
        self.merge(sc, scopes)
        return lines

    def carried(self, sc: Scope) -> tuple:
        names = [v for v, vt in sc.vars.items() if vt in (S, N, M, MN) and v not in sc.params]
        if names and self.r.random() < 0.6:
            name = self.r.choice(names)
            return name, sc.vars[name], []
        t = self.r.choice([S, S] + self.types)
        name = self.fresh("acc")
        init = f"{name} = {self.ex(sc, t, 1)}"
        sc.vars[name] = t
        return name, t, [init]

    def for_stmt(self, sc: Scope, d: int, ctx: dict, ind: str) -> list:
        self.families.add("for")
        r = self.r
        acc, t, init = self.carried(sc)
        i = self.fresh("i")
        vec_t = r.choice([N, M] if M in self.types else [N])
        vec = self.named(sc, vec_t)
        rng, dim = r.choice([
            (f"range(len({vec}))", self.dim_of(vec_t)),
            (f"range({vec}.shape[0])", self.dim_of(vec_t)),
            ("range(2)", "n"),  # n >= 2: an index below 2 fits a vector of n
            ("range(3)", None),
            (f"range(1, len({vec}))", self.dim_of(vec_t)),
            (f"range(0, len({vec}), 2)", self.dim_of(vec_t)),
        ])  # fmt: skip
        b = Scope(sc)
        b.loops.append((i, dim))
        inner = ctx | {"loop": "for"}
        if r.random() < 0.5:
            step = f"{ind}    {acc} = {self.ex(b, t, 2)}"
            body = [step] + self.block(b, r.randint(0, 2), d - 1, inner, ind + "    ")
        else:
            body = self.block(b, r.randint(0, 2), d - 1, inner, ind + "    ")
            body.append(f"{ind}    {acc} = {self.ex(b, t, 2)}")
        return [ind + x for x in init] + [f"{ind}for {i} in {rng}:"] + body

    def iter_stmt(self, sc: Scope, d: int, ctx: dict, ind: str) -> list:
        r = self.r
        acc, t, init = self.carried(sc)
        b = Scope(sc)
        k = r.random()
        if k < 0.3 and MN in self.types:
            row = self.fresh("row")
            head = f"for {row} in {self.named(sc, MN)}:"
            b.vars[row] = N
        elif k < 0.5:
            i, u = self.fresh("i"), self.fresh("u")
            head = f"for {i}, {u} in enumerate({self.named(sc, N)}):"
            b.vars[u] = S
            b.loops.append((i, "n"))
        elif k < 0.65:
            u, w = self.fresh("u"), self.fresh("w")
            head = f"for {u}, {w} in zip({self.named(sc, N)}, {self.ex(sc, N, 1)}):"
            b.vars[u] = S
            b.vars[w] = S
        elif k < 0.85:
            w = self.fresh("w")
            tt = r.choice(self.types)
            head = f"for {w} in ({self.ex(sc, tt, 1)}, {self.ex(sc, tt, 1)}):"
            b.vars[w] = tt
            self.families.add("tuple")
        else:
            kk, w = self.fresh("k"), self.fresh("w")
            tt = r.choice(self.types)
            p, q = self.ex(sc, tt, 1), self.ex(sc, tt, 1)
            head = f'for {kk}, {w} in {{"p": {p}, "q": {q}}}.items():'
            b.vars[w] = tt
            self.families.add("dict")
        self.families.add("for")
        inner = ctx | {"loop": "for"}
        body = self.block(b, r.randint(0, 1), d - 1, inner, ind + "    ")
        body.append(f"{ind}    {acc} = {self.ex(b, t, 2)}")
        return [ind + x for x in init] + [ind + head] + body

    def while_stmt(self, sc: Scope, d: int, ctx: dict, ind: str) -> list:
        self.families.add("while")
        r = self.r
        acc, t, init = self.carried(sc)
        j = self.fresh("j")
        limit = r.choice([2, 3, 4])
        cond = self.cond(sc) if r.random() < 0.5 else f"np.sum(np.square({acc})) < 4.0"
        lines = [ind + x for x in init]
        lines += [f"{ind}{j} = 0", f"{ind}while {j} < {limit} and ({cond}):"]
        lines.append(f"{ind}    {j} = {j} + 1")
        b = Scope(sc)
        inner = ctx | {"loop": "while"}
        body = self.block(b, r.randint(0, 1), d - 1, inner, ind + "    ")
        lines += body + [f"{ind}    {acc} = {self.ex(b, t, 2)}"]
        return lines

    def inplace_stmt(self, sc: Scope, d: int, ctx: dict, ind: str) -> list:
        self.families.add("inplace")
        r = self.r
        t = r.choice([x for x in self.types if x != S])
        name = self.fresh("z")
        src = self.named(sc, t)
        make = r.choice([
            f"np.zeros_like({src})", f"{src}.copy()", f"np.copy({src})", f"np.ones_like({src})",
            f"{src} * 1.0",
        ])  # fmt: skip
        lines = [f"{ind}{name} = {make}"]
        sc.vars[name] = t
        for _ in range(r.randint(1, 3)):
            k = r.random()
            if t == MN:
                if k < 0.3:
                    lines.append(f"{ind}{name}[0] = {self.ex(sc, N, 1)}")
                elif k < 0.5:
                    lines.append(f"{ind}{name}[:, 1] {r.choice(['=', '+='])} {self.ex(sc, M, 1)}")
                elif k < 0.8:
                    op = r.choice(["=", "+=", "*="])
                    lines.append(f"{ind}{name}[0, 0] {op} {self.ex(sc, S, 1)}")
                else:
                    lines.append(f"{ind}{name} += {self.ex(sc, MN, 1)}")
            else:
                if k < 0.3:
                    lines.append(f"{ind}{name}[{r.choice(['0', '1', '-1'])}] = {self.ex(sc, S, 1)}")
                elif k < 0.5:
                    lines.append(f"{ind}{name}[1:] {r.choice(['=', '+='])} {self.ex(sc, t, 1)}[1:]")
                elif k < 0.65:
                    lines.append(f"{ind}{name}[-1] += {self.ex(sc, S, 1)}")
                elif k < 0.8:
                    lines.append(f"{ind}{name} {r.choice(['+=', '*=', '-='])} {self.ex(sc, t, 1)}")
                else:
                    i = self.fresh("i")
                    lines.append(f"{ind}for {i} in range(len({name})):")
                    lines.append(f"{ind}    {name}[{i}] = {self.ex(sc, S, 1)} * {name}[{i}]")
                    self.families.add("for")
        return lines

    def container_stmt(self, sc: Scope, ctx: dict, ind: str) -> list:
        r = self.r
        t = r.choice(self.types)
        k = r.random()
        name = self.fresh(r.choice(["tp", "ls", "d"]))
        if k < 0.25:
            self.families.add("tuple")
            a, b = self.fresh(), self.fresh()
            u = r.choice(self.types)
            lines = [f"{ind}{name} = ({self.ex(sc, t, 1)}, {self.ex(sc, u, 1)})"]
            if r.random() < 0.5:
                lines.append(f"{ind}{a}, {b} = {name}")
                sc.vars[a], sc.vars[b] = t, u
            sc.containers[name] = ("tuple", [t, u])
            return lines
        if k < 0.55:
            self.families.add("list")
            lines = [f"{ind}{name} = [{self.ex(sc, t, 1)}, {self.ex(sc, t, 1)}]"]
            size = 2
            if r.random() < 0.5:
                lines.append(f"{ind}{name}[{r.randrange(2)}] = {self.ex(sc, t, 1)}")
            if r.random() < 0.5:
                i = self.fresh("i")
                lines.append(f"{ind}for {i} in range({r.choice([1, 2, 3])}):")
                b = Scope(sc)
                b.loops.append((i, None))
                lines.append(f"{ind}    {name}.append({self.ex(b, t, 1)})")
                self.families.add("for")
                s = self.fresh()
                total = r.choice([f"sum({name})", f"np.sum(np.stack({name}), axis=0)"])
                lines.append(f"{ind}{s} = {total}")
                sc.vars[s] = t
                return lines
            if r.random() < 0.3 and t == S:
                s = self.fresh()
                lines.append(f"{ind}{s} = np.array({name}) @ np.array([0.5, -1.0])")
                sc.vars[s] = S
            sc.containers[name] = ("list", (t, size))
            return lines
        if k < 0.8:
            self.families.add("dict")
            lines = [f'{ind}{name} = {{"a": {self.ex(sc, t, 1)}, "b": {self.ex(sc, t, 1)}}}']
            if r.random() < 0.6:
                key = r.choice("ab")
                lines.append(f'{ind}{name}["{key}"] {r.choice(["=", "+="])} {self.ex(sc, t, 1)}')
            if r.random() < 0.4:
                s = self.fresh()
                lines.append(f"{ind}{s} = sum({name}.values())")
                sc.vars[s] = t
            sc.containers[name] = ("dict", (t, ["a", "b"]))
            return lines
        self.families.add("compr")
        s = self.fresh()
        if MN in self.types and r.random() < 0.5:
            fn = r.choice(UNARY).format("row")
            lines = [f"{ind}{s} = np.stack([{fn} for row in {self.named(sc, MN)}])"]
            sc.vars[s] = MN
        else:
            vec = self.named(sc, N)
            fn = r.choice(UNARY).format("u")
            lines = [f"{ind}{s} = np.array([{fn} for u in {vec} if u > -0.5])"]
            lines.append(f"{ind}{s} = np.sum({s} * {s})")
            sc.vars[s] = S
        return lines

    # -- functions and modules
    def helper(self, name: str, ptypes: list, rt: str, defaults: bool) -> list:
        sc = Scope()
        params = [f"a{k}" for k in range(len(ptypes))]
        for p, pt in zip(params, ptypes):
            sc.vars[p] = pt
            sc.params.add(p)
        if defaults:
            params.append("c=0.5")
            sc.vars["c"] = S
            sc.params.add("c")
        ctx = {"main": True, "out": rt}
        outer_types = self.types
        have = set(ptypes)
        self.types = [S] + [t for t in (N, M) if t in have or MN in have]
        if MN in have or {M, N} <= have:
            self.types.append(MN)
        body = self.block(sc, self.r.randint(1, 3), 1, ctx, "    ")
        body.append(f"    return @RET({self.ex(sc, rt, 2)})")
        self.types = outer_types
        text = "\n".join(body).replace("@RET(", "(")
        return [f"def {name}({', '.join(params)}):", text]

    def program(self, seed: int, index: int) -> Program:
        r = self.r
        params = [("x", N)]
        if r.random() < 0.6:
            params.append(("A", MN))
            if r.random() < 0.5:
                params.append(("b", M))
        if r.random() < 0.6:
            params.append(("s", S))
        if r.random() < 0.3:
            params.append(("y", N))
        r.shuffle(params)
        if any(t == MN for _, t in params):
            self.types = [S, N, M, MN]
        names = [p for p, _ in params]
        two = len(names) > 1 and r.random() < 0.3
        wrt = tuple(r.sample(names, 2)) if two else (r.choice(names),)
        out_type = r.choice([N, N, M] if M in self.types else [N])
        main_mod, help_mod = f"fz_{self.tag}", f"fz_{self.tag}_h"
        # helpers: some in this module, some in the second one
        helper_src: dict = {main_mod: [], help_mod: []}
        for k in range(r.choice([0, 0, 1, 1, 2, 3])):
            other = r.random() < 0.4
            ptypes = [r.choice(self.types[1:])] + [r.choice(self.types)
                                                    for _ in range(r.choice([0, 0, 1]))]
            rt = r.choice([t for t in self.types if t in ptypes or t == S])
            name = f"h{k}_{self.tag}"  # unique: generated code calls helpers by name
            defaults = r.random() < 0.3
            self.in_second_module = other
            lines = self.helper(name, ptypes, rt, defaults)
            self.in_second_module = False
            helper_src[help_mod if other else main_mod] += lines + ["", ""]
            pre = "hm." if other else ""
            self.helpers.append((pre, name, ptypes, defaults, rt))
        sc = Scope()
        for p, t in params:
            sc.vars[p] = t
            sc.params.add(p)
        ctx = {"main": True, "out": out_type}
        tiny = r.random() < 0.15  # a line or two, the result returned as it is
        body = self.block(sc, r.randint(0, 1) if tiny else r.randint(2, 6), 0 if tiny else 2,
                          ctx, "    ")  # fmt: skip
        must_refuse = r.random() < 0.03
        if must_refuse:
            body = self.refused(sc) + body
            self.families.add("refuse")
        if tiny:
            self.families.add("tiny")
            body.append(f"    return @TINY({self.ex(sc, S, 2)}, {self.ex(sc, out_type, 2)})")
        else:
            body.append(f"    return {self.final(sc, ctx)}")
        reduce = r.choice([
            "np.sum(np.tanh({}))", "np.mean(np.square({}))", "np.sum(np.sin({}))",
            "np.linalg.norm({})", "np.sum({} * {})",
        ])  # fmt: skip
        body_text = "\n".join(body)
        def scalar(m):
            return reduce.format(*[m.group(1)] * reduce.count("{}"))

        f_text = re.sub(r"@RET\((.*)\)$", scalar, body_text, flags=re.M)
        fj_text = re.sub(r"@RET\((.*)\)$", r"\1", body_text, flags=re.M)
        if tiny:
            f_text, fj_text = self.tiny_returns(body_text)
        sig = ", ".join(names)
        main = ["import numpy as np", ""]
        if self.helpers and any(h[0] for h in self.helpers):
            main += [f"import {help_mod} as hm", ""]
        main += ["SCALE = 0.75", "", ""]
        main += helper_src[main_mod]
        main += [f"def f({sig}):", f_text, "", "", f"def fj({sig}):", fj_text, ""]
        if "scipy.special." in "\n".join(main):
            main.insert(0, "import scipy.special")
        sources = {main_mod: "\n".join(main)}
        if helper_src[help_mod]:
            uses_scipy = "scipy.special." in "".join(helper_src[help_mod])
            head = ["import scipy.special"] if uses_scipy else []
            sources[help_mod] = "\n".join(head + ["import numpy as np", "", "SCALE = 0.75", "", ""]
                                          + helper_src[help_mod]).rstrip() + "\n"  # fmt: skip
        if r.random() < 0.1:  # numpy under its own name
            sources[main_mod] = re.sub(r"\bnp\.", "numpy.", sources[main_mod]).replace(
                "import numpy as np", "import numpy"
            )
        return Program(seed, index, sources, params, wrt, out_type, must_refuse, set(self.families))

    @staticmethod
    def tiny_returns(text: str) -> tuple:
        """The bodies of f and fj from a body ending in `return @TINY(scalar, array)`."""
        head, _, last = text.rpartition("return @TINY(")
        call = ast.parse("t(" + last.rstrip(), mode="eval").body
        scalar, array = (ast.unparse(a) for a in call.args)
        return head + "return " + scalar, head + "return " + array

    def refused(self, sc: Scope) -> list:
        arr = "x"
        return self.r.choice([
            [f"    {arr}[0] = 1.0"],
            [f"    {arr}[1:] *= 2.0"],
            ["    try:", "        t0 = x * 2.0", "    except ValueError:", "        t0 = x"],
            ["    with np.errstate(all='ignore'):", "        t0 = x * 2.0"],
            ["    global SCALE", "    SCALE = 0.5"],
            ["    t0 = x * 2.0", "    del t0"],
            ["    t0 = {1, 2}"],
            ["    if (t0 := np.sum(x)) > 10.0:", "        x = x * t0"],
            ["    t0 = x[1:]", "    t0 *= 3.0"],
            ["    t0 = x", "    t0 += 1.0"],
            ["    t0 = np.fft.fft(x)"],
            ["    import math", "    t0 = math.pi * x"],
        ])  # fmt: skip


def generate(seed: int, index: int) -> Program:
    rng = random.Random(f"adcompiler-fuzz:{seed}:{index}")
    return Gen(rng, f"{seed}_{index}").program(seed, index)


# ----------------------------------------------------------------------------------------
# Loading a program
# ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def loaded(prog: Program, sources: dict | None = None):
    """Write the program's modules to a temporary folder and import the main one."""
    sources = sources or prog.sources
    folder = tempfile.mkdtemp(prefix="adfuzz-")
    try:
        for name, text in sources.items():
            with open(os.path.join(folder, name + ".py"), "w") as fh:
                fh.write(text)
        sys.path.insert(0, folder)
        importlib.invalidate_caches()
        for name in sources:
            sys.modules.pop(name, None)
        yield importlib.import_module(prog.main), folder
    finally:
        for name in sources:
            sys.modules.pop(name, None)
        if folder in sys.path:
            sys.path.remove(folder)
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------------------
# Data, call sequences, finite differences
# ----------------------------------------------------------------------------------------


class Sub(np.ndarray):
    """A trivial ndarray subclass."""


# (label, shapes, data key, scalars passed as, arrays passed as)
SEQUENCE = [
    ("first shapes", "A", 0, "float", "nd"),
    ("first shapes, same data again", "A", 0, "float", "nd"),
    ("first shapes, third time", "A", 0, "float", "nd"),
    ("first shapes, other data", "A", 1, "float", "nd"),
    ("new shapes", "B", 2, "float", "nd"),
    ("new shapes, again", "B", 3, "float", "nd"),
    ("first shapes again", "A", 4, "float", "nd"),
    ("scalars as 0-d arrays", "A", 5, "0d", "nd"),
    ("scalars as 0-d arrays, again", "A", 6, "0d", "nd"),
    ("scalars as np.float64", "A", 7, "f64", "nd"),
    ("scalars as np.float64, again", "A", 8, "f64", "nd"),
    ("ndarray subclass", "A", 9, "float", "sub"),
    ("ndarray subclass, again", "A", 10, "float", "sub"),
    ("ndarray subclass, new shapes", "B", 11, "float", "sub"),
    ("np.memmap slices", "A", 12, "float", "memmap"),
]

H1 = 1e-6  # central differences of first derivatives
H2 = 1e-4  # mixed second differences for hvp
TOL = 1e-5
TOL2 = 1e-4


class FuzzTimeout(BaseException):
    """The per-program time limit passed (a BaseException: `except Exception` lets it by)."""


def wrt_positions(prog: Program) -> list:
    names = [p for p, _ in prog.params]
    return [names.index(w) for w in prog.wrt]


def dims_for(prog: Program) -> dict:
    rng = random.Random(f"dims:{prog.seed}:{prog.index}")
    a = (rng.randint(2, 4), rng.randint(2, 5))
    b = a
    while b[0] == a[0] or b[1] == a[1]:  # both dimensions change
        b = (rng.randint(2, 4), rng.randint(2, 5))
    return {"A": a, "B": b}


def shape_of(t: str, dims: tuple) -> tuple:
    m, n = dims
    return {S: (), N: (n,), M: (m,), MN: (m, n)}[t]


def draw(prog: Program, dims: tuple, key: int, attempt: int) -> list:
    rng = np.random.default_rng([prog.seed, prog.index, key, attempt])
    out = []
    for _, t in prog.params:
        if t == S:
            out.append(float(rng.normal()))
        else:
            out.append(rng.normal(size=shape_of(t, dims)))
    return out


def plain(args: list) -> list:
    return [np.array(a, dtype=float) if isinstance(a, np.ndarray) else a for a in args]


def call_plain(fn, args: list):
    """fn on fresh copies of the arguments (a must-refuse program may write into them)."""
    return fn(*plain(args))


def shifted(args: list, idx: list, dirs: list, h: float) -> list:
    out = list(args)
    for i, v in zip(idx, dirs):
        out[i] = args[i] + h * v
    return out


def finite(v) -> bool:
    try:
        return bool(np.all(np.isfinite(np.asarray(v, dtype=float))))
    except (TypeError, ValueError):
        return False


def first_difference(fn, args, idx, dirs):
    """Central difference along `dirs`, or None where the one-sided ones disagree (a kink,
    a branch or trip count that changes within the step)."""
    f0 = np.asarray(call_plain(fn, args), dtype=float)
    fp = np.asarray(call_plain(fn, shifted(args, idx, dirs, H1)), dtype=float)
    fm = np.asarray(call_plain(fn, shifted(args, idx, dirs, -H1)), dtype=float)
    if not (f0.shape == fp.shape == fm.shape and finite(fp) and finite(fm)):
        return None
    central = (fp - fm) / (2 * H1)
    fwd, bwd = (fp - f0) / H1, (f0 - fm) / H1
    if np.any(np.abs(fwd - bwd) > 1e-4 * (1 + np.abs(central))):
        return None
    return central


def second_difference(fn, args, idx, u, v, h):
    """u . H v by a mixed central difference."""
    def at(a, b):
        return float(call_plain(fn, shifted(shifted(args, idx, u, a), idx, v, b)))

    return (at(h, h) - at(h, -h) - at(-h, h) + at(-h, -h)) / (4 * h * h)


@dataclass
class Ref:
    """The plain functions' values and finite differences at one data point."""

    args: list
    value: object
    jvalue: object
    v1: list
    v2: list
    d1: object  # f'(x) v1
    d2: object  # f'(x) v2
    dj: object  # fj'(x) v1 (None: unreliable, or fj fails)
    h12: object  # v2 . H v1 (None: unreliable)
    writes: bool = False  # the plain function writes into its arguments


def reference(prog: Program, mod, dims: tuple, key: int) -> Ref | None:
    idx = wrt_positions(prog)
    for attempt in range(6):
        args = draw(prog, dims, key, attempt)
        try:  # a draw where the plain function meets an invalid value or overflows is skipped
            with np.errstate(all="raise", under="ignore"):
                copies = plain(args)
                value = mod.f(*copies)
                writes = not unchanged(args, copies)  # then it must be refused
                if not finite(value) or np.ndim(value) != 0 or abs(float(value)) > 1e6:
                    continue
                rng = np.random.default_rng([prog.seed, prog.index, key, attempt, 7])
                v1 = [rng.normal(size=np.shape(args[i])) if np.ndim(args[i]) else
                      float(rng.normal()) for i in idx]  # fmt: skip
                v2 = [rng.normal(size=np.shape(args[i])) if np.ndim(args[i]) else
                      float(rng.normal()) for i in idx]  # fmt: skip
                d1 = first_difference(mod.f, args, idx, v1)
                d2 = first_difference(mod.f, args, idx, v2)
                if d1 is None or d2 is None:
                    continue
                try:
                    jvalue = call_plain(mod.fj, args)
                    dj = first_difference(mod.fj, args, idx, v1) if finite(jvalue) else None
                except Exception:  # noqa: BLE001 - fj is checked only where it runs
                    jvalue, dj = None, None
                h12 = second_difference(mod.f, args, idx, v2, v1, H2)
                h12b = second_difference(mod.f, args, idx, v2, v1, 2 * H2)
                if not (finite(h12) and abs(h12 - h12b) < 1e-3 * (1 + abs(h12))):
                    h12 = None
        except FuzzTimeout:
            raise
        except Exception:  # noqa: BLE001 - this draw makes the plain function fail
            continue
        return Ref(args, value, jvalue, v1, v2, d1, d2, dj, h12, writes)
    return None


def materialize(args: list, scalars: str, arrays: str, folder: str, tag: str) -> list:
    out = []
    for k, a in enumerate(args):
        if not isinstance(a, np.ndarray):
            out.append({"float": float, "0d": np.array, "f64": np.float64}[scalars](a))
        elif arrays == "sub":
            out.append(np.array(a).view(Sub))
        elif arrays == "memmap":
            path = os.path.join(folder, f"mm_{tag}_{k}.dat")
            mm = np.memmap(path, dtype=float, mode="w+", shape=(a.size + 2,))
            mm[1:-1] = a.ravel()
            out.append(mm[1:-1].reshape(a.shape))
        else:
            out.append(np.array(a))
    return out


# ----------------------------------------------------------------------------------------
# Running the modes
# ----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str  # correct, refused, crash, wrong, invalid
    mode: str
    step: str = ""
    detail: str = ""
    cause: str = ""  # for refusals: the message class; for crashes: the exception type

    def key(self) -> tuple:
        return (self.kind, self.mode, self.cause)


def refusal_cause(e: BaseException) -> str:
    if isinstance(e, ad_errors.UnsupportedSyntaxError):
        msg = e.diagnostics[0].message
    else:
        msg = str(e).splitlines()[0] if str(e) else ""
    msg = re.sub(r"`[^`]*`", "`…`", msg)
    msg = re.sub(r"'[^']*'", "'…'", msg)
    msg = re.sub(r"\d+", "N", msg)
    return f"{type(e).__name__}: {msg[:90]}"


def crash_cause(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    where = ""
    for fr in reversed(tb):
        if "adcompiler" in fr.filename and "/tests/" not in fr.filename:
            where = f" in {os.path.basename(fr.filename)}:{fr.name}"
            break
    else:
        if tb:
            where = f" in {os.path.basename(tb[-1].filename)}:{tb[-1].name}"
    return re.sub(r"adcompiler-\d+: ", "", f"{type(e).__name__}{where}")


def transform(mod, mode: str, wrt):
    w = wrt[0] if len(wrt) == 1 else tuple(wrt)
    if mode == "grad":
        return ad.grad(mod.f, wrt=w)
    if mode == "value_and_grad":
        return ad.value_and_grad(mod.f, wrt=w)
    if mode == "jvp":
        return ad.jvp(mod.f, wrt=w)
    if mode == "hvp":
        return ad.hvp(mod.f, wrt=w)
    if mode == "jacobian":
        return ad.jacobian(mod.fj, wrt=w, mode="reverse")
    if mode == "jacobian_fwd":
        return ad.jacobian(mod.fj, wrt=w, mode="forward")
    raise ValueError(mode)


def as_list(v, n: int) -> list:
    if n == 1:
        return [v]
    if not isinstance(v, tuple) or len(v) != n:
        raise Mismatch(f"expected a tuple of {n}, got {type(v).__name__}")
    return list(v)


class Mismatch(Exception):
    pass


def near(got, want, scale: float, tol: float) -> bool:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    if got.shape != want.shape or not finite(got):
        return False
    return bool(np.all(np.abs(got - want) <= tol * (1 + np.abs(want) + scale)))


def check_value(got, ref: Ref, j: bool = False) -> None:
    want = ref.jvalue if j else ref.value
    if want is None:
        return
    if np.shape(got) != np.shape(want) or not near(got, want, 0.0, 1e-9):
        raise Mismatch(f"value {summary(got)} != f(...) {summary(want)}")


def summary(v) -> str:
    a = np.asarray(v, dtype=float) if not isinstance(v, (tuple, list)) else v
    if isinstance(a, (tuple, list)):
        return "(" + ", ".join(summary(x) for x in a) + ")"
    text = np.array2string(a, precision=6, threshold=12) if a.ndim else f"{float(a):.8g}"
    return f"{text} shape {a.shape}" if a.ndim else text


def contract(parts: list, dirs: list):
    total, scale = 0.0, 0.0
    for g, v in zip(parts, dirs):
        g, v = np.asarray(g, dtype=float), np.asarray(v, dtype=float)
        total = total + np.tensordot(g, v, axes=v.ndim)
        scale = scale + np.tensordot(np.abs(g), np.abs(v), axes=v.ndim)
    return total, float(np.max(scale)) if np.ndim(scale) else float(scale)


def check_shapes(parts: list, args: list, idx: list, prefix: tuple = ()) -> None:
    for g, i in zip(parts, idx):
        want = prefix + np.shape(args[i])
        if np.shape(g) != want:
            raise Mismatch(f"derivative shape {np.shape(g)}, expected {want}")


def direction(vs: list) -> list:
    """Copies of the direction vectors; Mismatch later if generated code writes into them."""
    copies = snapshot(vs)
    _passed.append((vs, copies))
    return copies


_passed: list = []


def check_directions() -> None:
    while _passed:
        original, passed = _passed.pop()
        if not unchanged(original, passed):
            raise Mismatch("the caller's tangent (direction) was written to")


def check_call(mode: str, fn, args: list, ref: Ref, idx: list) -> None:
    n = len(idx)
    pack = (lambda vs: vs[0]) if n == 1 else tuple
    if mode in ("grad", "value_and_grad"):
        out = fn(*args)
        if mode == "value_and_grad":
            if not isinstance(out, tuple) or len(out) != 2:
                raise Mismatch(f"value_and_grad returned {type(out).__name__}")
            check_value(out[0], ref)
            out = out[1]
        parts = as_list(out, n)
        check_shapes(parts, args, idx)
        for dirs, want in ((ref.v1, ref.d1), (ref.v2, ref.d2)):
            got, scale = contract(parts, dirs)
            if not near(got, want, scale, TOL):
                raise Mismatch(f"gradient . v = {summary(got)}, finite differences {summary(want)}")
    elif mode == "jvp":
        out = fn(*args, pack(direction(ref.v1)))
        if not isinstance(out, tuple) or len(out) != 2:
            raise Mismatch(f"jvp returned {type(out).__name__}")
        check_value(out[0], ref)
        scale = 1.0 + float(np.sum(np.abs(ref.d1)))
        if not near(out[1], ref.d1, scale, TOL):
            raise Mismatch(f"J v = {summary(out[1])}, finite differences {summary(ref.d1)}")
    elif mode == "hvp":
        out = fn(*args, pack(direction(ref.v1)))
        parts = as_list(out, n)
        check_shapes(parts, args, idx)
        if ref.h12 is None:
            return
        got, scale = contract(parts, ref.v2)
        if not near(got, ref.h12, scale, TOL2):
            raise Mismatch(f"u . H v = {summary(got)}, finite differences {summary(ref.h12)}")
    else:
        if ref.jvalue is None:
            return
        out = fn(*args)
        parts = as_list(out, n)
        check_shapes(parts, args, idx, np.shape(ref.jvalue))
        if ref.dj is None:
            return
        got, scale = contract(parts, ref.v1)
        if not near(got, ref.dj, scale, TOL):
            raise Mismatch(f"J v = {summary(got)}, finite differences {summary(ref.dj)}")


def snapshot(args: list) -> list:
    return [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in args]


def unchanged(before: list, after: list) -> bool:
    return all(
        not isinstance(a, np.ndarray) or np.array_equal(np.asarray(a), b, equal_nan=True)
        for b, a in zip(before, after)
    )


def run_mode(prog: Program, mod, mode: str, refs: dict, folder: str, upto: int | None = None):
    """The outcome of one mode over the call sequence (up to step `upto`)."""
    idx = wrt_positions(prog)
    try:
        fn = transform(mod, mode, prog.wrt)
    except FuzzTimeout:
        raise
    except REFUSALS as e:
        return Outcome("refused", mode, "compile", str(e)[:2000], refusal_cause(e))
    except Exception as e:  # noqa: BLE001
        return Outcome("crash", mode, "compile", fmt_exc(e), crash_cause(e))
    steps = SEQUENCE if upto is None else SEQUENCE[: upto + 1]
    calls = 0  # made so far (a step whose data could not be drawn is skipped)
    for label, shapes, key, scalars, arrays in steps:
        ref = refs.get((shapes, key))
        if ref is None:
            continue
        calls += 1
        args = materialize(ref.args, scalars, arrays, folder, f"{mode}{calls}")
        before = snapshot(args)
        _passed.clear()
        try:
            with np.errstate(all="ignore"):
                check_call(mode, fn, args, ref, idx)
        except FuzzTimeout:
            raise
        except Mismatch as e:
            return Outcome("wrong", mode, label, str(e), "wrong")
        except REFUSALS as e:
            if calls == 1:
                return Outcome("refused", mode, label, str(e)[:2000], refusal_cause(e))
            return Outcome("crash", mode, label, "refused only on a later call: " + fmt_exc(e),
                           "late " + refusal_cause(e))  # fmt: skip
        except Exception as e:  # noqa: BLE001
            return Outcome("crash", mode, label, fmt_exc(e), crash_cause(e))
        if not unchanged(before, args):
            return Outcome("wrong", mode, label, "the caller's arguments were written to",
                           "wrote into an argument")  # fmt: skip
        try:
            check_directions()
        except Mismatch as e:
            return Outcome("wrong", mode, label, str(e), "wrote into the tangent")
    return Outcome("correct", mode)


def fmt_exc(e: BaseException) -> str:
    lines = traceback.format_exception(type(e), e, e.__traceback__)
    text = "".join(lines)
    return text[-3000:]


def references(prog: Program, mod) -> dict:
    dims = dims_for(prog)
    refs = {}
    for _, shapes, key, _, _ in SEQUENCE:
        if (shapes, key) not in refs:
            refs[(shapes, key)] = reference(prog, mod, dims[shapes], key)
    return refs


def _alarm(signum, frame):
    raise FuzzTimeout()


def run_program(prog: Program, modes=MODES, time_limit: float = 60.0, sources=None,
                upto: int | None = None) -> list:  # fmt: skip
    """Outcomes of every mode for one program (a list of Outcome)."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, time_limit)
    results: list = []
    cache = os.environ.get("ADCOMPILER_DISK_CACHE")
    os.environ["ADCOMPILER_DISK_CACHE"] = "0"  # every program is new: nothing to reuse
    try:
        with loaded(prog, sources) as (mod, folder), contextlib.redirect_stdout(io.StringIO()):
            refs = references(prog, mod)
            if all(r is None for r in refs.values()):
                return [Outcome("invalid", m, detail="the plain function fails on every draw")
                        for m in modes]  # fmt: skip
            writes = any(r.writes for r in refs.values() if r is not None)
            for mode in modes:
                out = run_mode(prog, mod, mode, refs, folder, upto)
                if writes and out.kind == "correct":
                    out = Outcome("wrong", mode, "compile", "accepted a function that writes "
                                  "into its arguments", "accepted a write into an argument")
                elif prog.must_refuse and out.kind == "correct":
                    out = Outcome("wrong", mode, "compile", "accepted a construct that must be "
                                  "refused", "accepted a refused construct")  # fmt: skip
                results.append(out)
    except FuzzTimeout:
        done = {o.mode for o in results}
        results += [Outcome("crash", m, detail=f"timeout after {time_limit:g} s", cause="timeout")
                    for m in modes if m not in done]  # fmt: skip
    except SyntaxError as e:
        results = [Outcome("invalid", m, detail=f"program does not import: {e}") for m in modes]
    except Exception as e:  # noqa: BLE001 - the program itself fails to import
        results = [Outcome("invalid", m, detail=f"program does not import: {fmt_exc(e)}")
                   for m in modes]  # fmt: skip
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if cache is None:
            del os.environ["ADCOMPILER_DISK_CACHE"]
        else:
            os.environ["ADCOMPILER_DISK_CACHE"] = cache
    return results


# ----------------------------------------------------------------------------------------
# Minimizing a failure
# ----------------------------------------------------------------------------------------


class _Edit(ast.NodeTransformer):
    """Applies the `target`-th simplification of a module (in a fixed order): delete a
    statement, replace an `if`/loop by its body, replace an expression by a part of it."""

    def __init__(self, target: int):
        self.target, self.count = target, 0

    def hit(self) -> bool:
        self.count += 1
        return self.count - 1 == self.target

    def generic_visit(self, node):
        for name, old in ast.iter_fields(node):
            if isinstance(old, list):
                new: list = []
                for item in old:
                    if isinstance(item, ast.stmt) and not isinstance(item, ast.Import):
                        if self.hit():
                            continue
                        if isinstance(item, (ast.If, ast.For, ast.While)) and self.hit():
                            new.extend(item.body)
                            continue
                        if isinstance(item, ast.If) and item.orelse and self.hit():
                            new.extend(item.orelse)
                            continue
                    if isinstance(item, ast.AST):
                        item = self.visit(item)
                    new.append(item)
                if not new and old and name == "body":
                    new = [ast.Pass()]
                setattr(node, name, new)
            elif isinstance(old, ast.AST):
                setattr(node, name, self.visit(old))
        return node

    def visit(self, node):
        if isinstance(node, ast.expr) and not isinstance(getattr(node, "ctx", None), ast.Store):
            for part in _parts(node):
                if self.hit():
                    return part
        return self.generic_visit(node)


NUMPY = ("np", "numpy")


def _parts(node) -> list:
    if isinstance(node, ast.Call):
        return [a for a in node.args if not isinstance(a, ast.Starred)] + (
            [node.func.value] if isinstance(node.func, ast.Attribute)
            and not (isinstance(node.func.value, ast.Name) and node.func.value.id in NUMPY)
            else []
        )  # fmt: skip
    if isinstance(node, ast.BinOp):
        return [node.left, node.right]
    if isinstance(node, ast.UnaryOp):
        return [node.operand]
    if isinstance(node, ast.IfExp):
        return [node.body, node.orelse]
    if isinstance(node, ast.BoolOp):
        return list(node.values)
    if isinstance(node, (ast.Subscript, ast.Attribute)) and not (
        isinstance(node.value, ast.Name) and node.value.id in NUMPY
    ):
        return [node.value]
    return []


def _without_twin(prog: Program, mode: str) -> dict:
    """The sources with the function the mode does not use made trivial."""
    sources = dict(prog.sources)
    tree = ast.parse(sources[prog.main])
    jac = mode.startswith("jacobian")
    drop = "f" if jac else "fj"
    body = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == drop:
            if jac:
                node = ast.parse("def f(*args):\n    return sum(fj(*args))").body[0]
            else:
                node = ast.parse("fj = f").body[0]
        body.append(node)
    tree.body = body
    sources[prog.main] = ast.unparse(tree) + "\n"
    return sources


def _same(a: Outcome, b: Outcome) -> bool:
    return a.kind == b.kind and a.mode == b.mode and a.cause == b.cause


def minimize(prog: Program, failure: Outcome, budget: float = 120.0, log=None) -> tuple:
    """Simplify `prog` while `failure` (same kind, mode and cause) persists.
    Returns (sources, outcome)."""
    step = next((k for k, s in enumerate(SEQUENCE) if s[0] == failure.step), len(SEQUENCE) - 1)

    def oracle(sources):
        out = run_program(prog, (failure.mode,), time_limit=20.0, sources=sources, upto=step)[0]
        return out if _same(out, failure) else None

    start = time.time()
    best = dict(prog.sources)
    outcome = failure
    trial = _without_twin(prog, failure.mode)
    got = oracle(trial)
    if got:
        best, outcome = trial, got
    progress = True
    while progress and time.time() - start < budget:
        progress = False
        for name in list(best):
            target = 0
            while time.time() - start < budget:
                tree = ast.parse(best[name])
                edit = _Edit(target)
                tree = edit.visit(tree)
                if target >= edit.count:
                    break
                try:
                    text = ast.unparse(ast.fix_missing_locations(tree)) + "\n"
                    with warnings.catch_warnings():
                        warnings.simplefilter("error")
                        compile(text, name, "exec")
                except (SyntaxError, ValueError, SyntaxWarning):
                    target += 1
                    continue
                if text == best[name]:
                    target += 1
                    continue
                trial = dict(best)
                trial[name] = text
                got = oracle(trial)
                if got:
                    best, outcome, progress = trial, got, True
                    if log:
                        log(f"  minimized to {sum(len(t) for t in best.values())} characters")
                else:
                    target += 1
        # a second module that nothing imports any more goes
        for name in list(best)[1:]:
            if name not in best[prog.main]:
                trial = {k: v for k, v in best.items() if k != name}
                got = oracle(trial)
                if got:
                    best, outcome = trial, got
    return best, outcome


# ----------------------------------------------------------------------------------------
# A self-contained script that reproduces a failure
# ----------------------------------------------------------------------------------------

_REPRO = '''"""{title}

Found by tests/fuzz.py (seed {seed}, program {index}); minimized. Mode: {mode}.
Run: PYTHONPATH=<an adcompiler checkout> python <this file>
Prints WRONG or CRASH (with details) while the bug is there, OK once it is fixed.
"""

import importlib
import importlib.util
import os
import sys
import tempfile
import traceback

import numpy as np

import adcompiler as ad

SOURCES = {sources}
WRT = {wrt!r}
MODE = {mode!r}
# the calls, in order: (what the call exercises, arguments, scalars as, arrays as, v1, v2)
CALLS = {calls}


class Sub(np.ndarray):
    pass


def load():
    folder = tempfile.mkdtemp(prefix="adfuzz-repro-")
    for name, text in SOURCES.items():
        with open(os.path.join(folder, name + ".py"), "w") as fh:
            fh.write(text)
    sys.path.insert(0, folder)
    return importlib.import_module(next(iter(SOURCES))), folder


def as_passed(args, scalars, arrays, folder, tag):
    out = []
    for k, a in enumerate(args):
        if not isinstance(a, np.ndarray):
            out.append({{"float": float, "0d": np.array, "f64": np.float64}}[scalars](a))
        elif arrays == "sub":
            out.append(np.array(a).view(Sub))
        elif arrays == "memmap":
            mm = np.memmap(os.path.join(folder, f"mm{{tag}}_{{k}}.dat"), dtype=float, mode="w+",
                           shape=(a.size + 2,))
            mm[1:-1] = a.ravel()
            out.append(mm[1:-1].reshape(a.shape))
        else:
            out.append(np.array(a))
    return out


def plain(fn, args):
    return fn(*[np.array(a) if isinstance(a, np.ndarray) else a for a in args])


def shifted(args, idx, dirs, h):
    out = list(args)
    for i, v in zip(idx, dirs):
        out[i] = args[i] + h * v
    return out


def fd(fn, args, idx, v, h=1e-6):
    fp = np.asarray(plain(fn, shifted(args, idx, v, h)), dtype=float)
    fm = np.asarray(plain(fn, shifted(args, idx, v, -h)), dtype=float)
    return (fp - fm) / (2 * h)


def fd2(fn, args, idx, u, v, h=1e-4):
    def at(a, b):
        return float(plain(fn, shifted(shifted(args, idx, u, a), idx, v, b)))

    return (at(h, h) - at(h, -h) - at(-h, h) + at(-h, -h)) / (4 * h * h)


def contract(parts, dirs):
    return sum(np.tensordot(np.asarray(g, float), np.asarray(v, float), axes=np.ndim(v))
               for g, v in zip(parts, dirs))


def main():
    mod, folder = load()
    names = {params!r}
    idx = [names.index(w) for w in WRT]
    w = WRT[0] if len(WRT) == 1 else tuple(WRT)
    pack = (lambda vs: vs[0]) if len(WRT) == 1 else tuple
    unpack = (lambda r: [r]) if len(WRT) == 1 else list
    if MODE in ("grad", "value_and_grad", "jvp", "hvp"):
        fn = getattr(ad, MODE)(mod.f, wrt=w)
    else:
        fn = ad.jacobian(mod.fj, wrt=w, mode="forward" if MODE == "jacobian_fwd" else "reverse")
    for k, (label, args, scalars, arrays, v1, v2) in enumerate(CALLS):
        args = [np.array(a) if isinstance(a, list) else a for a in args]
        v1 = [np.array(a) if isinstance(a, list) else a for a in v1]
        v2 = [np.array(a) if isinstance(a, list) else a for a in v2]
        passed = as_passed(args, scalars, arrays, folder, k)
        before = [np.array(a) for a in passed]
        try:
            if MODE in ("grad", "value_and_grad"):
                out = fn(*passed)
                if MODE == "value_and_grad":
                    value, out = out
                    want = plain(mod.f, args)
                    if not np.allclose(value, want, rtol=1e-9, atol=1e-12):
                        print(f"WRONG at call {{k}} ({{label}}): value {{value}}, f(...) {{want}}")
                        return
                got, want = contract(unpack(out), v1), fd(mod.f, args, idx, v1)
            elif MODE == "jvp":
                value, got = fn(*passed, pack(v1))
                want = fd(mod.f, args, idx, v1)
            elif MODE == "hvp":
                got = contract(unpack(fn(*passed, pack(v1))), v2)
                want = fd2(mod.f, args, idx, v2, v1)
            else:
                got = contract(unpack(fn(*passed)), v1)
                want = fd(mod.fj, args, idx, v1)
        except Exception:
            print(f"CRASH at call {{k}} ({{label}}):")
            traceback.print_exc(file=sys.stdout)
            return
        if not all(np.array_equal(np.asarray(a), b) for a, b in zip(passed, before)):
            print(f"WRONG at call {{k}} ({{label}}): the arguments were written to")
            return
        got, want = np.asarray(got, float), np.asarray(want, float)
        tol = {tol} * (1 + np.abs(want) + np.abs(got))
        if got.shape != want.shape or not np.all(np.abs(got - want) <= tol):
            print(f"WRONG at call {{k}} ({{label}}): {{MODE}} gives {{got}}, "
                  f"finite differences {{want}}")
            return
    print("OK: every call agrees with finite differences")


if __name__ == "__main__":
    main()
'''


def _lit(v):
    if isinstance(v, np.ndarray):
        return np.asarray(v, dtype=float).tolist()
    return float(v)


def repro_script(prog: Program, sources: dict, outcome: Outcome, title: str = "") -> str:
    """A self-contained script replaying the calls up to the failing one."""
    step = next((k for k, s in enumerate(SEQUENCE) if s[0] == outcome.step), 0)
    calls = []
    with loaded(prog, sources) as (mod, _):
        refs = references(prog, mod)
    for label, shapes, key, scalars, arrays in SEQUENCE[: step + 1]:
        ref = refs.get((shapes, key))
        if ref is None:
            continue
        calls.append((label, [_lit(a) for a in ref.args], scalars, arrays,
                      [_lit(v) for v in ref.v1], [_lit(v) for v in ref.v2]))  # fmt: skip
    title = title or (f"{outcome.kind.upper()} in {outcome.mode}: {outcome.cause}, at the call "
                      f"'{outcome.step}'")  # fmt: skip
    body = "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in sources.items()) + "}"
    return _REPRO.format(
        title=title, seed=prog.seed, index=prog.index, mode=outcome.mode, wrt=list(prog.wrt),
        sources=body, calls=repr(calls), tol=TOL2 if outcome.mode == "hvp" else TOL,
        params=[p for p, _ in prog.params],
    )  # fmt: skip


# ----------------------------------------------------------------------------------------
# Batches and the command line
# ----------------------------------------------------------------------------------------


def _worker(job):
    seed, index, modes, time_limit = job
    prog = generate(seed, index)
    start = time.time()
    outcomes = run_program(prog, modes, time_limit)
    return seed, index, outcomes, sorted(prog.families), time.time() - start


def run_batch(seed: int, programs: int, modes=MODES, jobs: int = 1, time_limit: float = 60.0,
              start: int = 0, progress=None):  # fmt: skip
    """Run programs start..start+programs-1 of `seed`; yields (index, outcomes, families)."""
    work = [(seed, i, tuple(modes), time_limit) for i in range(start, start + programs)]
    if jobs <= 1:
        for job in work:
            yield _worker(job)
        return
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs, maxtasksperchild=100) as pool:
        yield from pool.imap_unordered(_worker, work, chunksize=4)


def _minimize_job(job):
    seed, index, outcome, budget = job
    sources, got = minimize(generate(seed, index), outcome, budget)
    return seed, index, outcome, sources, got


def _map(fn, jobs: list, processes: int):
    if processes <= 1:
        yield from map(fn, jobs)
        return
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(processes, maxtasksperchild=4) as pool:
        yield from pool.imap_unordered(fn, jobs)


RANK = {"wrong": 4, "crash": 3, "invalid": 2, "refused": 1, "correct": 0}


def program_outcome(outcomes: list) -> Outcome:
    return max(outcomes, key=lambda o: RANK[o.kind])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--programs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="index of the first program")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--mode", nargs="*", choices=MODES, default=list(MODES))
    ap.add_argument("--out", help="write each minimized failure here as its own script")
    ap.add_argument("--time-limit", type=float, default=180.0, help="seconds per program")
    ap.add_argument("--minimize", type=int, default=20,
                    help="minimize at most this many failures (one per distinct cause)")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds per minimization")
    ap.add_argument("--show", type=int, help="print program SHOW of --seed and exit")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--log", help="append every outcome but `correct` here, one JSON a line")
    args = ap.parse_args(argv)
    if args.show is not None:
        prog = generate(args.seed, args.show)
        for name, text in prog.sources.items():
            print(f"# ---- {name}.py (wrt {prog.wrt})\n{text}")
        return 0
    t0 = time.time()
    per_program: Counter = Counter()
    per_mode: Counter = Counter()
    refusals: Counter = Counter()
    crashes: Counter = Counter()
    families: Counter = Counter()
    failures: dict = {}  # (kind, mode, cause) -> (index, outcome)
    done = 0
    main_pid = os.getpid()

    def stop(signum, frame):  # SIGTERM ends the batch early too (SIGINT is ignored in `cmd &`)
        if os.getpid() != main_pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    batch = run_batch(args.seed, args.programs, args.mode, args.jobs, args.time_limit, args.start)
    while True:
        try:  # Ctrl-C (SIGINT) ends the batch early, with the summary of what ran
            _, index, outcomes, fams, _ = next(batch)
        except (StopIteration, KeyboardInterrupt):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            batch.close()
            break
        done += 1
        families.update(fams)
        worst = program_outcome(outcomes)
        per_program[worst.kind] += 1
        if args.log:
            with open(args.log, "a") as fh:
                for o in outcomes:
                    if o.kind != "correct":
                        last = o.detail.strip().splitlines()[-1][:300] if o.detail else ""
                        fh.write(json.dumps({"seed": args.seed, "index": index, "mode": o.mode,
                                             "kind": o.kind, "step": o.step, "cause": o.cause,
                                             "detail": last}) + "\n")  # fmt: skip
        for o in outcomes:
            per_mode[(o.mode, o.kind)] += 1
            if o.kind == "refused":
                refusals[o.cause] += 1
            if o.kind in ("crash", "wrong"):
                crashes[(o.kind, o.cause, o.step)] += 1
                failures.setdefault((o.kind, o.mode, o.cause, o.step), (index, o))
        if not args.quiet and (done % 100 == 0 or worst.kind in ("crash", "wrong")):
            rate = done / (time.time() - t0)
            print(f"[{done}/{args.programs}] {dict(per_program)} ({rate:.2f} programs/s)"
                  + (f"  program {index}: {worst.kind} in {worst.mode}: {worst.cause}"
                     if worst.kind in ("crash", "wrong") else ""),
                  file=sys.stderr, flush=True)  # fmt: skip
    elapsed = time.time() - t0
    print(f"\n== {done} programs, seed {args.seed}, modes {' '.join(args.mode)}: "
          f"{elapsed:.0f} s, {done / max(elapsed, 1e-9):.2f} programs/s")  # fmt: skip
    print("per program (worst mode):", ", ".join(f"{k} {per_program[k]}" for k in RANK))
    print("per mode:")
    for m in args.mode:
        print(f"  {m:15s}", ", ".join(f"{k} {per_mode[(m, k)]}" for k in RANK))
    total = sum(per_mode.values())
    n_ref = sum(refusals.values())
    print(f"refusals: {n_ref} of {total} program-modes ({100 * n_ref / max(total, 1):.1f}%), "
          "by cause:")  # fmt: skip
    for cause, n in refusals.most_common():
        print(f"  {n:6d}  {cause}")
    if crashes:
        print("crashes and wrong results, by cause:")
        for (kind, cause, step), n in crashes.most_common():
            print(f"  {n:6d}  {kind}: {cause} (at the call '{step}')")
    print("construct families covered:", ", ".join(f"{k} {families[k]}" for k in FAMILIES))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    seen_causes: set = set()
    todo = []
    for (kind, _mode, cause, step), (index, outcome) in sorted(failures.items(), key=str):
        if (kind, cause, step) in seen_causes or len(todo) >= args.minimize:
            continue
        seen_causes.add((kind, cause, step))
        todo.append((args.seed, index, outcome, args.budget))
    for seed, index, outcome, sources, got in _map(_minimize_job, todo, args.jobs):
        kind, mode, cause = outcome.kind, outcome.mode, outcome.cause
        prog = generate(seed, index)
        print(f"\n---- {kind.upper()} in {mode} ({cause}), program {index} of seed {args.seed}, "
              f"at call '{got.step}'")  # fmt: skip
        print(f"wrt {prog.wrt}; expected vs got: {got.detail.strip().splitlines()[-1][:400]}")
        for name, text in sources.items():
            print(f"# {name}.py\n{text}")
        if args.out:
            slug = re.sub(r"[^a-z0-9]+", "_", f"{kind}_{mode}_{cause}".lower()).strip("_")[:60]
            path = os.path.join(args.out, f"s{args.seed}_p{index}_{slug}.py")
            with open(path, "w") as fh:
                fh.write(repro_script(prog, sources, got))
            print(f"(written to {path})")
    return 1 if per_program["wrong"] or per_program["crash"] else 0


if __name__ == "__main__":
    sys.exit(main())
