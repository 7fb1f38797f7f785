"""Functions defined inside the function, and what they share with it (mixed into
`Lowering`).

A nested `def` or a `lambda` is inlined where it is called. As in Python:

- its enclosing variables are those of the function that *defines* it (lexical
  scoping), read as they are at the call (late binding), never the caller's;
- the names it assigns are its own locals (reading one before it is assigned is
  the error Python would raise), except those it declares `nonlocal`: assigning one
  assigns the enclosing function's variable, which every function sharing it sees;
- a list or a dict is one object, whichever function holds it: an item written,
  an item appended, in a nested function or in a helper it was passed to, is seen by
  every name (in any of these functions) and every tuple, list or dict that holds it.

The lowering keeps lists and dicts known while compiling as Python tuples and dicts
whose identity stands for the object; a write makes a new one, and `rebind` gives it to
every holder. Where that cannot be done exactly (the write happens inside an `if` or a
loop of the function writing, and a function that is not being lowered in that region
holds the object), the write is refused with a located error.
"""

from __future__ import annotations

import gast

from adcompiler.frontend.base import (
    IN_REGION_HINT,
    MAX_INLINE_DEPTH,
    LocalFunction,
    LoweringError,
    Static,
)
from adcompiler.frontend.control import RESULT, UNDEFINED, _walk_scope, is_append
from adcompiler.frontend.views import rebound_names, written_names
from adcompiler.ssa import Value


class EmptyList(tuple):
    """An empty list literal: a tuple of its own (``()`` is one object in CPython, and two
    lists must not be one: ``a = []; b = []; a.append(v)``)."""

    __slots__ = ()


def new_list(items) -> tuple:
    """A compile-time list holding `items`: a new object, never one another list is."""
    items = list(items)
    return tuple(items) if items else EmptyList()


class Closures:
    """The nested-function half of `Lowering` (mixed into it)."""

    lexical = None  # the Lowering of the function that defines this one (a nested def)
    nonlocals: frozenset = frozenset()  # names this one declares `nonlocal`
    own: frozenset = frozenset()  # names local to this nested function (params, assigned)

    def define_local(self, node) -> None:
        """`def name(...)` inside the function: a function to inline where it is called."""
        self.env[node.name] = Static(self.local_function(node, node.name, node.body, None))

    def expr_Lambda(self, node):  # noqa: N802
        return Static(self.local_function(node, "lambda", None, node.body))

    def local_function(self, node, name, body, expression) -> LocalFunction:
        args = node.args
        if args.kwarg:
            raise LoweringError(
                node,
                f"a `**{args.kwarg.id}` parameter of the nested function `{name}` is not "
                "supported",
                "name each keyword parameter",
            )
        names = [a.id for a in args.args + args.kwonlyargs]
        positional = [a.id for a in args.args]
        defaults = dict(
            zip(
                positional[len(positional) - len(args.defaults) :],
                [self.expr(d) for d in args.defaults],
            )
        )
        for a, d in zip(args.kwonlyargs, args.kw_defaults):
            if d is not None:
                defaults[a.id] = self.expr(d)
        vararg = args.vararg.id if args.vararg else None
        return LocalFunction(
            name, names, defaults, body, expression, self, vararg, len(positional)
        )

    def inline_local(self, local: LocalFunction, args, kwargs, node):
        """A call to a function defined inside the function (`def` or `lambda`): inlined,
        reading the variables of the function that defines it as they are now."""
        if self.depth >= MAX_INLINE_DEPTH:
            raise LoweringError(node, f"calls nest deeper than {MAX_INLINE_DEPTH} (recursion?)")
        scope = local.scope if local.scope is not None else self
        inner = type(self)(scope.fn, scope.parsed, self.nodes, self.diagnostics, self.depth + 1)
        inner.share_views(self)
        inner.lexical = scope
        inner.closure, inner.cells = scope.closure, scope.cells
        inner.env = {k: v for k, v in scope.env.items() if not k.startswith(".")}
        positional = local.names[: local.positional]
        bound = bind_arguments(
            local.name, positional, local.vararg, local.names, local.defaults, args, kwargs, node
        )
        if local.body is not None:
            inner.nonlocals = frozenset(
                n for s in local.body if isinstance(s, gast.Nonlocal) for n in s.names
            )
            own = bound_names(local.body) - inner.nonlocals
            for name in own:
                inner.env[name] = UNDEFINED  # a local of its own, assigned before it is read
        else:
            own = set()
        inner.own = frozenset(own | set(bound))
        inner.env.update(bound)
        if local.expression is not None:  # a lambda
            return inner.expr(local.expression)
        return self.run_inlined(inner, local.body, local.name, node)

    # -- the functions that see a change --------------------------------------

    def enclosing_scopes(self):
        """The lowerings whose names may hold an object this one changes: `now`, those
        that see the change now (this one, the functions it is inlined into up to the
        first that is inside an `if` or a loop, and the functions that define them);
        `later`, those that would see it only after that `if` or loop (a change made
        there cannot be given to them)."""
        stack = []
        scope = self
        while scope is not None:
            stack.append(scope)
            scope = scope.outer
        on_stack = {id(s) for s in stack}
        now, later, cut = [], [], False
        for s in stack:
            (later if cut else now).append(s)
            cut = cut or s.nodes is not s.top_nodes
        seen = set(on_stack)
        for s in stack:
            lex = s.lexical
            while lex is not None and id(lex) not in seen:
                seen.add(id(lex))
                (later if cut else now).append(lex)  # returned: its env is its last one
                lex = lex.lexical
        return now, later

    def rebind(self, old, new, node=None) -> None:
        """The object `old` (a list or dict known while compiling, a list at run time) is
        now `new`: every name that holds it, here and in every function that sees it, and
        every tuple, list or dict that holds it, holds `new` (`b = a; b.append(v)`, a
        nested function writing `idx[0] += 1`, a helper appending to its argument).
        Inside an `if` or a loop, the functions beyond it see the change when it ends
        (`share_region_changes`)."""
        self.rebind_all({id(old): (old, new)}, node)

    def rebind_all(self, changes: dict, node) -> None:
        """`rebind` for several objects at once: id(old) -> (old, new)."""
        now, later = self.enclosing_scopes()
        callers = _callers(self)
        # the function inside whose `if` or loop this runs: when it ends, it gives the
        # objects its names hold to the functions beyond (`share_region_changes`)
        region = next((x for x in now if x.nodes is not x.top_nodes), None)
        for scope in later:
            for old, _ in changes.values():
                if id(scope) in callers and any(h is old for h in region.env.values()):
                    continue
                if any(held is old or _holds(held, old) for held in scope.env.values()):
                    raise LoweringError(
                        node,
                        "this write, inside an `if` or a loop, changes a list or dict that "
                        "another function holds too, where adcompiler cannot follow it",
                        IN_REGION_HINT,
                    )
        made: dict[int, object] = {k: new for k, (_, new) in changes.items()}

        def replace(held):
            if id(held) in made:
                return made[id(held)]
            if isinstance(held, tuple):
                items = [replace(h) for h in held]
                if any(a is not b for a, b in zip(items, held)):
                    made[id(held)] = type(held)(items) if type(held) is tuple else tuple(items)
                    return made[id(held)]
            elif isinstance(held, dict):
                items = {k: replace(h) for k, h in held.items()}
                if any(items[k] is not h for k, h in held.items()):
                    made[id(held)] = items
                    return items
            return held

        for scope in now:
            for name, held in list(scope.env.items()):
                got = replace(held)
                if got is not held:
                    scope.env[name] = got

    def share_region_changes(self, before: dict, stmts, node) -> None:
        """After an `if` or a loop: a list or dict (`before`: the environment before it)
        that the region changed without assigning its name again (an item written, an
        item appended, here or by a function it called) is changed for every function
        that holds it too. Where the region both assigns the name again and writes into
        the object, and another function holds it, which one it is after the region
        depends on the data: refused."""
        if self.outer is None and self.lexical is None:
            return  # no other function holds this one's objects
        rebound = rebound_names(stmts)
        written = written_names(stmts) | {
            n.func.value.id for s in stmts for n in gast.walk(s) if is_append(n)
        }
        others = [s for s in self.enclosing_scopes()[0] if s is not self]
        others += [s for s in self.enclosing_scopes()[1]]
        changes = {}
        for name, old in before.items():
            new = self.env.get(name)
            # (an array or a list at run time too: a value another function still holds
            # after the region changed it through this name)
            if new is old or name.startswith(".") or not isinstance(old, (tuple, dict, Value)):
                continue
            if not any(h is old or _holds(h, old) for s in others for h in s.env.values()):
                continue
            if name in rebound:
                if name in written:
                    raise LoweringError(
                        node,
                        f"`{name}` is a list or dict another function holds too; this "
                        f"{'loop' if isinstance(node, (gast.For, gast.While)) else '`if`'} "
                        "both writes into it and assigns the name again: adcompiler cannot "
                        "follow which object it holds after it",
                        f"use another name for the new object, or {IN_REGION_HINT}",
                    )
                continue
            changes[id(old)] = (old, new)
        if changes:
            self.rebind_all(changes, node)

    def assign_nonlocal(self, target, value) -> None:
        """`name = value` for a name this nested function declared `nonlocal`: the
        variable of the enclosing function, seen by every function that shares it."""
        name = target.id
        owner = self.lexical  # the nearest enclosing function that binds `name`
        while owner is not None and owner.lexical is not None and name not in owner.own:
            owner = owner.lexical
        if owner is None or name not in owner.env:
            raise LoweringError(target, f"no enclosing variable `{name}` for `nonlocal`")
        now, later = self.enclosing_scopes()
        if owner not in now or any(_shares(s, owner, name) for s in later):
            raise LoweringError(
                target,
                f"`{name}` (nonlocal) is assigned inside an `if` or a loop of a nested "
                "function: adcompiler cannot follow it there",
                IN_REGION_HINT,
            )
        self.env[name] = value
        for s in now:
            if s is not self and _shares(s, owner, name):
                s.env[name] = value


def bind_arguments(name, positional, vararg, names, defaults, args, kwargs, node) -> dict:
    """The parameters of the function `name` bound to a call's arguments (`*vararg`:
    a tuple of the positional arguments left), its defaults where none is given."""
    bound = dict(zip(positional, args))
    extra = tuple(args[len(positional) :])
    if vararg is not None:
        bound[vararg] = extra
    elif extra:
        raise LoweringError(node, f"too many positional arguments in the call to `{name}`")
    for k, v in kwargs.items():
        if k not in names or k in bound:
            problem = "has no parameter" if k not in names else "got twice the argument"
            raise LoweringError(node, f"`{name}` {problem} `{k}`")
        bound[k] = v
    for n in names:
        if n not in bound:
            if n not in defaults:
                raise LoweringError(node, f"missing argument `{n}` in the call to `{name}`")
            bound[n] = defaults[n]
    return bound


def _callers(scope) -> set[int]:
    """Ids of `scope` and the lowerings it is inlined into."""
    out = set()
    while scope is not None:
        out.add(id(scope))
        scope = scope.outer
    return out


def _shares(scope, owner, name: str) -> bool:
    """Whether `name` in `scope` is the variable `name` of `owner` (the same function,
    or one defined in it, not binding `name` itself, any depth down)."""
    while scope is not None and scope is not owner:
        if name in scope.own:
            return False
        scope = scope.lexical
    return scope is owner


def _holds(container, value) -> bool:
    if isinstance(container, tuple):
        return any(c is value or _holds(c, value) for c in container)
    if isinstance(container, dict):
        return any(c is value or _holds(c, value) for c in container.values())
    return False


def bound_names(stmts) -> set[str]:
    """The names a function body binds (its locals, as Python decides them): assignment
    targets (also `+=`), loop variables, nested `def`s; not the variables of a
    comprehension or what a function defined in it binds."""
    names: set[str] = set()
    skip: set[int] = set()
    for stmt in stmts:
        for node in _walk_scope(stmt):
            if isinstance(node, gast.comprehension):
                skip.update(id(n) for n in gast.walk(node.target))
            elif isinstance(node, gast.FunctionDef):
                names.add(node.name)
            elif (
                isinstance(node, gast.Name)
                and isinstance(node.ctx, gast.Store)
                and id(node) not in skip
            ):
                names.add(node.id)
    names.discard(RESULT)
    return names
