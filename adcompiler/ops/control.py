"""Structured control flow, boolean logic, effects, and the tapes of the reverse sweep.

Control-flow operators own regions (`ssa.Block`s), in the style of MLIR's
`scf` dialect; their derivatives are not rules but handlers in the transforms.

    if:     inputs [cond]; regions [then, else], each yielding the outputs
    for:    inputs [start, stop, step, *inits]; region body(i, *carried) yielding the
            next carried values; outputs the final carried values
    while:  inputs [*inits]; regions cond(*carried) yielding [flag] and
            body(*carried) yielding the next carried values; outputs the final ones

Tapes are what the reverse sweep saves per loop iteration: a list made before
the loop (`tape_new(n)` preallocated where the trip count is known, `tape_list()`
otherwise), written in the primal loop and read in the adjoint loop. Like the
region operators they have no rules: forward mode gives a tape of varied values a
tape of tangents (`forward.HANDLERS`), and reverse mode over a gradient gives it an
adjoint tape, written by the adjoint of each read and read by the adjoint of the
write (`reverse.Sweep.tape_read_adjoint`, `tape_write_adjoint`).
"""

from __future__ import annotations

import ast

import numpy as np

from adcompiler.ops.core import Op, Param, View, adjoint, register, tangent


def _region_op(name: str) -> Op:
    return register(Op(name, None, (Param("inputs", "varargs"),), name, regions=True))


IF = _region_op("if")
FOR = _region_op("for")
WHILE = _region_op("while")


def and_(a, b):
    return a and b


def or_(a, b):
    return a or b


def not_(a):
    return not a


# `a and b`, `a or b` return one of their operands: the derivative goes to the one taken
AND = register(Op("and", and_, (Param("a"), Param("b")), "_0 and _1", inline=True))
OR = register(Op("or", or_, (Param("a"), Param("b")), "_0 or _1", inline=True))


def _taken(g, a, first: bool):
    """`g` where the operand `a` is true (`first`) or false, else 0."""
    return g.builder.call(np.where, a, g, 0.0) if first else g.builder.call(np.where, a, 0.0, g)


adjoint(and_)(lambda g, ans, a, b: (_taken(g, a, False), _taken(g, a, True)))  # b if a else a
adjoint(or_)(lambda g, ans, a, b: (_taken(g, a, True), _taken(g, a, False)))  # a if a else b


def _pick_tangent(ts, a, b, then_b: bool):
    builder = next(t for t in ts if t is not None).builder
    ta, tb = (t if t is not None else builder.call(np.zeros_like, v) for t, v in zip(ts, (a, b)))
    return builder.call(np.where, a, tb, ta) if then_b else builder.call(np.where, a, ta, tb)


tangent(and_)(lambda ts, ans, a, b: _pick_tangent(ts, a, b, True))
tangent(or_)(lambda ts, ans, a, b: _pick_tangent(ts, a, b, False))
IS = register(
    Op("is", lambda a, b: a is b, (Param("a"), Param("b")), "_0 is _1", nondiff=True, inline=True)
)
IS_NOT = register(
    Op(
        "is_not",
        lambda a, b: a is not b,
        (Param("a"), Param("b")),
        "_0 is not _1",
        nondiff=True,
        inline=True,
    )
)
NOT = register(Op("not", not_, (Param("a"),), "not _0", nondiff=True, inline=True))


def _print_spelling(node, args):
    keywords = [ast.keyword(arg=k, value=ast.Constant(v)) for k, v in node.attrs["keywords"]]
    return ast.Call(ast.Name("print", ast.Load()), list(args), keywords)


PRINT = register(
    Op(
        "print",
        print,
        (Param("args", "varargs"), Param("keywords", "attr", ())),
        _print_spelling,
        nondiff=True,
        unique=True,
    )
)


def _fstring_spelling(node, args):
    values = iter(args)
    pieces = []
    for part in node.attrs["parts"]:
        if part[0] == "text":
            pieces.append(ast.Constant(part[1]))
        else:
            spec = ast.JoinedStr([ast.Constant(part[2])]) if part[2] else None
            pieces.append(ast.FormattedValue(next(values), part[1], spec))
    return ast.JoinedStr(pieces)


FSTRING = register(
    Op(
        "fstring",
        None,
        (Param("values", "varargs"), Param("parts", "attr", ())),
        _fstring_spelling,
        nondiff=True,
        inline=True,
    )
)


def check(condition, message):
    """`assert` as a call, so that it is an effect of the IR like any other."""
    if not condition:
        raise AssertionError(message)


def _assert_spelling(node, args):
    return ast.Assert(args[0], ast.Constant(node.attrs["message"]))


ASSERT = register(
    Op(
        "assert",
        check,
        (Param("condition"), Param("message", "attr", "")),
        _assert_spelling,
        nondiff=True,
        unique=True,
    )
)


# ---------------------------------------------------------------------------
# Tapes
# ---------------------------------------------------------------------------


def tape_new(n):
    return [None] * n


def tape_list():
    return []


def _tape_new_spelling(node, args):
    return ast.BinOp(ast.List([ast.Constant(None)], ast.Load()), ast.Mult(), args[0])


def _tape_set_spelling(node, args):
    target = ast.Subscript(args[0], args[1], ast.Store())
    return ast.Assign([target], args[2])


def _tape_append_spelling(node, args):
    return ast.Expr(ast.Call(ast.Attribute(args[0], "append", ast.Load()), [args[1]], []))


def _tape_get_spelling(node, args):
    return ast.Subscript(args[0], args[1], ast.Load())


TAPE_NEW = register(
    Op("tape_new", tape_new, (Param("n"),), _tape_new_spelling, nondiff=True, unique=True)
)
TAPE_LIST = register(
    Op(
        "tape_list",
        tape_list,
        (),
        lambda node, args: ast.List([], ast.Load()),
        nondiff=True,
        unique=True,
    )
)
TAPE_SET = register(
    Op(
        "tape_set",
        None,
        (Param("tape"), Param("k"), Param("v")),
        _tape_set_spelling,
        nondiff=True,
        holds=2,
    )
)
TAPE_APPEND = register(
    Op(
        "tape_append",
        None,
        (Param("tape"), Param("v")),
        _tape_append_spelling,
        nondiff=True,
        holds=1,
    )
)
TAPE_GET = register(  # an entry of the tape: the object kept there (or a row of a stack)
    Op(
        "tape_get",
        None,
        (Param("tape"), Param("k")),
        _tape_get_spelling,
        nondiff=True,
        view=View(),
        unique=True,
    )
)
# The rows of a tape's same-shaped entries as one matrix: vectors stacked, matrices one
# under the other (`np.vstack`; adcompiler.specialize.batch, for sums over a loop's
# iterations taken after it).
TAPE_CONCAT = register(
    Op(
        "tape_concat", lambda tape: np.vstack(tape), (Param("tape"),), "np.vstack", nondiff=True
    )  # fmt: skip
)


def tape_stack(n, shape=()):
    return np.empty((n, *shape))


def _tape_stack_spelling(node, args):
    dims = ast.Tuple([args[0], *(ast.Constant(d) for d in node.attrs["shape"])], ast.Load())
    empty = ast.Attribute(ast.Name("np", ast.Load()), "empty", ast.Load())
    return ast.Call(empty, [dims], [])


# A tape of float arrays of one shape, one row per iteration: `np.empty((n, *shape))`
# (adcompiler.specialize.stacks; `tape_set` copies into a row, `tape_get` reads a view).
TAPE_STACK = register(
    Op(
        "tape_stack",
        tape_stack,
        (Param("n"), Param("shape", "attr", ())),
        _tape_stack_spelling,
        nondiff=True,
    )  # fmt: skip
)


def trip_count(start, stop, step):
    return len(range(start, stop, step))


def _trip_count_spelling(node, args):
    rng = ast.Call(ast.Name("range", ast.Load()), list(args), [])
    return ast.Call(ast.Name("len", ast.Load()), [rng], [])


TRIP_COUNT = register(
    Op(
        "trip_count",
        trip_count,
        (Param("start"), Param("stop"), Param("step")),
        _trip_count_spelling,
        nondiff=True,
        inline=True,
    )
)
