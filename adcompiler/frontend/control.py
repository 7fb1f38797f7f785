"""Lowering statements and control flow into structured regions.

    if c:                        %x_1 = if(%c)
        x = x * 2      ──▶         then: %x_2 = mul(%x, 2); yield %x_2
    return x                       else: yield %x
                                 return %x_1

`break`, `continue` and `return` are lowered without jumps: the statements
after an `if` that may leave the block are lowered into the branch that does
not leave it (so a guard clause stays an if/else), `break` sets a loop-carried
flag that the loop condition reads (a `for` with a `break` becomes a `while`),
and a `return` inside a loop sets a flag and the value, which the code after
the loop reads.

Environment keys starting with "." are the compiler's own variables: ".result"
(the value being returned), ".returned" and ".broke" (flags).
"""

from __future__ import annotations

import builtins
import operator

import gast
import numpy as np

from adcompiler.frontend.base import LoweringError, Stale, Static
from adcompiler.ops import lookup
from adcompiler.ops.control import AND, ASSERT, FOR, FSTRING, IF, NOT, OR, PRINT, WHILE
from adcompiler.ops.mutation import LIST_APPEND, MAKE_LIST
from adcompiler.ssa import Block, Node, Value

RESULT, RETURNED, BROKE = ".result", ".returned", ".broke"
FLAG_DEFAULTS = {RETURNED: False, BROKE: False}


class Undefined:
    """A variable assigned on some paths only."""

    def __repr__(self) -> str:
        return "<undefined>"


UNDEFINED = Undefined()


class Poisoned:
    """A variable whose defining statement was reported as an error."""

    def __repr__(self) -> str:
        return "<error>"


POISONED = Poisoned()


def leaves_block(stmt, kinds=(gast.Return, gast.Break, gast.Continue)) -> bool:
    """True if `stmt` contains a statement of `kinds` that leaves the enclosing block
    (a `break`/`continue` inside a nested loop leaves only that loop)."""
    if isinstance(stmt, kinds):
        return True
    if isinstance(stmt, (gast.For, gast.While)):
        inner = tuple(k for k in kinds if k is gast.Return)
        return bool(inner) and any(leaves_block(s, inner) for s in stmt.body + stmt.orelse)
    if isinstance(stmt, (gast.FunctionDef, gast.Lambda)):
        return False
    if isinstance(stmt, gast.If):
        return any(leaves_block(s, kinds) for s in stmt.body + stmt.orelse)
    return False


def _walk_scope(stmt):
    """The nodes of `stmt`, not descending into the bodies of functions defined there
    (their assignments and returns are theirs): a `def` yields itself only."""
    todo = [stmt]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, (gast.FunctionDef, gast.Lambda)):
            continue
        todo.extend(gast.iter_child_nodes(node))


def assigned_names(stmts) -> set[str]:
    """Names a list of statements may assign (targets, loop variables, augmented assignment,
    a nested `def`'s name; not what a nested function assigns or returns)."""
    names: set[str] = set()
    for stmt in stmts:
        for node in _walk_scope(stmt):
            if isinstance(node, gast.FunctionDef):
                names.add(node.name)
            if isinstance(node, gast.Name) and isinstance(node.ctx, gast.Store):
                names.add(node.id)
            elif (
                isinstance(node, gast.Subscript)
                and isinstance(node.ctx, gast.Store)
                and isinstance(node.value, gast.Name)
            ):
                names.add(node.value.id)  # x[i] = v makes a new x
            elif is_append(node):
                names.add(node.func.value.id)  # lst.append(v) makes a new lst
            elif isinstance(node, gast.Return):
                names.update((RESULT, RETURNED))
            elif isinstance(node, gast.Break):
                names.add(BROKE)
    return names


class ControlFlow:
    """The statement-level half of `Lowering` (mixed into it)."""

    # -- statement lists -----------------------------------------------------

    def lower_stmts(self, stmts) -> str:
        """Lower `stmts` into the current block; return "exit" if every path leaves it."""
        for i, stmt in enumerate(stmts):
            self.loc = self.parsed.loc(stmt)
            self.statement_start = len(self.nodes)
            rest = stmts[i + 1 :]
            try:
                if isinstance(stmt, gast.Return):
                    value = self.expr(stmt.value) if stmt.value is not None else Static(None)
                    self.env[RESULT] = value
                    self.env[RETURNED] = Static(True)
                    return "exit"
                if isinstance(stmt, gast.Break):
                    self.env[BROKE] = Static(True)
                    return "exit"
                if isinstance(stmt, gast.Continue):
                    return "exit"
                if isinstance(stmt, gast.If):
                    if leaves_block(stmt):
                        return self.lower_if(stmt.test, stmt.body + rest, stmt.orelse + rest)
                    self.lower_if(stmt.test, stmt.body, stmt.orelse)
                elif isinstance(stmt, (gast.For, gast.While)):
                    if stmt.orelse:
                        raise LoweringError(stmt, "`else` on a loop is not supported", "use a flag")
                    self.lower_loop(stmt)
                    if self._may_have_returned():
                        return self.after_return_flag(rest)
                elif isinstance(stmt, gast.Expr) and _is_call_to(stmt.value, "print"):
                    self.lower_print(stmt.value)
                elif isinstance(stmt, gast.Expr) and is_append(stmt.value):
                    self.lower_append(stmt.value)
                elif isinstance(stmt, gast.Assert):
                    self.lower_assert(stmt)
                elif isinstance(stmt, gast.FunctionDef):
                    self.define_local(stmt)
                else:
                    self.statement(stmt)
            except LoweringError as err:
                self.report(err)
                # What the statement would have defined is unknown: later uses of it are
                # not reported again (one problem, one error).
                for name in assigned_names([stmt]):
                    self.env[name] = POISONED
                if isinstance(stmt, gast.Return):
                    return "exit"
        return "fall"

    def _may_have_returned(self) -> bool:
        flag = self.env.get(RETURNED, Static(False))
        return not (isinstance(flag, Static) and flag.obj is False)

    def after_return_flag(self, rest) -> str:
        """After a loop that may have returned: the rest runs only if it did not."""
        flag = self.env[RETURNED]
        then_env = dict(self.env)
        return self.branch(self.as_value(flag), ([], then_env, "exit"), rest)

    def region(self, stmts, env=None, params=()) -> tuple[Block, dict, str]:
        """Lower `stmts` into a new block starting from `env`; return it, the env after, status."""
        outer = (self.nodes, self.env, getattr(self, "statement_start", 0))
        self.nodes, self.env = [], dict(self.env if env is None else env)
        try:
            status = self.lower_stmts(stmts)
            return Block(params=list(params), nodes=self.nodes), self.env, status
        finally:
            self.nodes, self.env, self.statement_start = outer

    # -- if ------------------------------------------------------------------

    def lower_if(self, test, body, orelse) -> str:
        cond = self.expr(test)
        if isinstance(cond, Static):  # decided when compiling: lower the branch taken
            return self.lower_stmts(body if cond.obj else orelse)
        return self.branch(self.as_value(self.truth(cond)), body, orelse)

    def branch(self, cond: Value, then_part, else_part) -> str:
        """Emit an `if` node; each part is a statement list or (nodes, env, status)."""
        loc = self.loc
        before = dict(self.env)
        stmts = [s for part in (then_part, else_part) if isinstance(part, list) for s in part]
        # arrays the branches write into that have named views: the array is merged, its
        # views are made again from it after the `if` (frontend.views)
        plans = self.region_families(stmts, None, "`if`") if stmts else []
        then_block, then_env, then_status = self._part(then_part)
        else_block, else_env, else_status = self._part(else_part)
        for _, _, views in plans:
            for name in views:
                then_env[name] = else_env[name] = self.env[name]
        merged = self.merge(
            [(then_block, then_env, then_status), (else_block, else_env, else_status)]
        )
        outputs, outs, by_values = [], [], {}
        for name, (values, hint) in merged.items():
            # names that hold one array in each branch (`z = y`) hold one after the `if`
            same = tuple(id(v) for v in values)
            if same not in by_values:
                then_block.yields.append(values[0])
                else_block.yields.append(values[1])
                by_values[same] = Value(hint, loc=loc)
                outs.append(by_values[same])
            outputs.append((name, by_values[same]))
        node = Node(IF, [cond], {}, outs, [then_block, else_block], loc)
        self.nodes.append(node)
        self.loc = loc
        self.mark_branch_outputs(merged, outputs, plans, [then_env, else_env])
        self.bind_merged(merged, outputs)
        self.follow_roots(plans)
        self.link_region_outputs(
            [(out, merged[name][0]) for name, out in outputs], [then_env, else_env]
        )
        self.share_region_changes(before, stmts, None)
        return "exit" if then_status == else_status == "exit" else "fall"

    def _part(self, part):
        if isinstance(part, tuple):
            nodes, env, status = part
            return Block(nodes=list(nodes)), env, status
        return self.region(part)

    def merge(self, parts) -> dict[str, tuple[list[Value], str]]:
        """Variables that differ between the parts: name -> (value in each part, hint).

        Symbolic tuples merge element by element (their names get "#i" suffixes).
        A variable assigned in some parts only becomes undefined after the merge.
        """
        names = set().union(*(env.keys() for _, env, _ in parts))
        merged: dict[str, tuple[list[Value], str]] = {}
        for name in sorted(names):
            values = [env.get(name, _default(name)) for _, env, _ in parts]
            if all(_same(v, values[0]) for v in values):
                self.env[name] = values[0]
            elif stale := [v for v in values if isinstance(v, Stale)]:
                self.env[name] = stale[0]  # a may-be-view whose array a branch wrote
            elif any(v is UNDEFINED for v in values):
                self.env[name] = UNDEFINED
            else:
                if isinstance(values[0], (tuple, dict)):
                    self.env[name] = values[0]  # the structure; its leaves are merged below
                self._merge_into(merged, name, values, parts)
        return merged

    def _merge_into(self, merged, name, values, parts) -> None:
        if all(isinstance(v, tuple) for v in values) and len({len(v) for v in values}) == 1:
            for i in range(len(values[0])):
                self._merge_into(merged, f"{name}#{i}", [v[i] for v in values], parts)
            return
        if all(isinstance(v, dict) for v in values) and len({tuple(v) for v in values}) == 1:
            for k in values[0]:
                self._merge_into(merged, f"{name}#{k!r}", [v[k] for v in values], parts)
            return
        converted = [
            v if isinstance(v, Value) else self.value_in(block, v)
            for v, (block, _, _) in zip(values, parts)
        ]
        merged[name] = (converted, name.lstrip(".").split("#")[0])

    def value_in(self, block: Block, x) -> Value:
        """`as_value(x)`, with any nodes it needs emitted at the end of `block`."""
        outer = self.nodes
        self.nodes = block.nodes
        try:
            return self.as_value(x)
        finally:
            self.nodes = outer

    def bind_merged(self, merged, outputs) -> None:
        """Set each merged variable (or tuple element) to its new output value."""
        by_name = dict(outputs)
        tuples: dict[str, dict[int, Value]] = {}
        for name in merged:
            base, _, index = name.partition("#")
            if index:
                tuples.setdefault(base, {})[index] = by_name[name]
            else:
                self.env[name] = by_name[name]
        for base, items in tuples.items():
            current = self.env.get(base)
            if isinstance(current, dict):
                self.env[base] = {k: items.get(repr(k), v) for k, v in current.items()}
            else:
                self.env[base] = tuple(items.get(str(i), v) for i, v in enumerate(current))

    def truth(self, cond):
        """A condition as the user meant it: `if x:` on a scalar."""
        return cond

    # -- loops ---------------------------------------------------------------

    def lower_loop(self, stmt) -> None:
        if isinstance(stmt, gast.For) and self.unroll(stmt):
            return
        read_after = self.loaded_outside(stmt)
        targets = assigned_names([stmt.target]) if isinstance(stmt, gast.For) else set()
        before = (len(self.nodes), dict(self.env), len(self.diagnostics))
        # (functions sharing objects with this one see a list made a run-time list here)
        envs = [(s, dict(s.env)) for s in self.enclosing_scopes()[0] if s is not self]
        written: list[str] = []  # arrays written through views made in the loop
        grown: set[str] = set()  # lists appended to by a function the loop calls
        shared: dict = {}  # slots whose next values may be an argument or another's array
        while True:
            carried = []
            for n in sorted(assigned_names(stmt.body) | targets | set(written)):
                defined = n in self.env and self.env[n] is not UNDEFINED
                if defined or n in (RESULT, RETURNED, BROKE) or n in read_after:
                    if not defined and not n.startswith("."):
                        self.env[n] = Static(None)  # first assigned in the loop, read after
                    carried.append(n)
            # arrays the loop writes into that have named views: the array is carried,
            # its views are made again from it (frontend.views)
            plans = self.region_families(stmt.body, stmt, "loop", written)
            for _, root_name, views in plans:
                carried[:] = [n for n in carried if n not in views]
                if root_name not in carried:
                    carried.append(root_name)
            self.lists_to_runtime(stmt, carried, grown)
            entry = dict(self.env)  # (a list appended to is a run-time list from here)
            outer_plans, self.loop_plans = self.loop_plans, plans
            outer_shared, self.loop_shared = self.loop_shared, shared
            try:
                once = False  # whether the body surely runs (to its end) at least once
                if isinstance(stmt, gast.For):
                    start, stop, step, item = self.loop_range(stmt)
                    if any(leaves_block(s, (gast.Return, gast.Break)) for s in stmt.body):
                        self.lower_for_as_while(stmt, carried, start, stop, step, item)
                    else:
                        self.lower_for(stmt, carried, start, stop, step, item)
                        once = _runs(start, stop, step)
                elif isinstance(stmt, gast.While):
                    self.lower_while(stmt, carried)
                else:
                    raise LoweringError(stmt, "unsupported loop")
                more = self.mark_loop(stmt, carried, once)
                uncarried = self.after_loop(stmt, plans, self.loop_trace, final=bool(written))
            finally:
                self.loop_plans = outer_plans
                self.loop_shared = outer_shared
            if not uncarried and not more:
                break
            # a write through a view made in the loop changed an array the loop did not
            # carry: lower the loop again, carrying it; a slot whose next value may be an
            # argument or another name's array: again with it marked (`mark_slots`)
            written = uncarried or written
            _, _, start_env, end_env, _ = self.loop_trace
            grown |= {
                n
                for n in uncarried
                if isinstance(start_env.get(n), tuple)
                and (
                    isinstance(end_env.get(n), tuple)
                    and len(start_env[n]) != len(end_env[n])
                    or isinstance(end_env.get(n), Value)  # made a run-time list there
                )
            }
            shared.update(more)
            del self.nodes[before[0] :], self.diagnostics[before[2] :]
            self.env.clear()
            self.env.update(before[1])
            for scope, env in envs:
                scope.env.clear()
                scope.env.update(env)
        self.share_region_changes(entry, stmt.body, stmt)
        if isinstance(stmt, gast.For):  # (the views in `plans` are kept: made again)
            self.forget_loop_locals(stmt, carried + [v for _, _, vs in plans for v in vs])

    def loaded_outside(self, loop) -> set[str]:
        """Names the function reads outside `loop` (a value first made in the loop and
        read after it must be carried out of it)."""
        inside = {id(n) for n in gast.walk(loop)}
        return {
            n.id
            for n in gast.walk(self.parsed.tree)
            if isinstance(n, gast.Name) and isinstance(n.ctx, gast.Load) and id(n) not in inside
        }

    def unroll(self, stmt) -> bool:
        """`for` over a tuple, a list literal or a compile-time sequence: the body is
        lowered once per element (the elements may differ in kind and shape)."""
        it = stmt.iter
        items = None
        nested = any(
            _is_call_to(a, "zip") or _is_call_to(a, "enumerate") for a in getattr(it, "args", [])
        )
        if nested:
            return False
        if (
            isinstance(it, gast.Call)
            and isinstance(it.func, gast.Name)
            and it.func.id
            in (
                "enumerate",
                "zip",
            )
        ):
            args = [self.expr(a) for a in it.args]
            seqs = [_static_items(a) for a in args]
            if all(s is not None for s in seqs):
                if it.func.id == "enumerate":
                    start = _keyword(self, it, "start", 0)
                    items = [(Static(start + i), v) for i, v in enumerate(seqs[0])]
                else:
                    items = list(zip(*seqs))
        elif not (isinstance(it, gast.Call) and isinstance(it.func, gast.Name)):
            items = _static_items(self.expr(it))
        if items is None:
            return False
        if any(leaves_block(s) for s in stmt.body):
            raise LoweringError(
                stmt,
                "`break`/`continue`/`return` in a loop over a tuple or constant list",
                "loop over `range(len(...))` instead",
            )
        for item in items:
            self.statement_start = len(self.nodes)
            self.assign(stmt.target, item)
            self.lower_stmts(stmt.body)
        return True

    def forget_loop_locals(self, stmt, carried) -> None:
        """A name first assigned inside a loop is undefined after it (assign it before)."""
        for name in assigned_names(
            stmt.body + [stmt.target] if isinstance(stmt, gast.For) else stmt.body
        ):
            if name not in carried and not name.startswith("."):
                self.env[name] = UNDEFINED

    def loop_range(self, stmt):
        """(start, stop, step, item) where item(i) gives the loop target's value at index i."""
        it = stmt.iter
        if _is_call_to(it, "range"):
            fn = self.expr(it.func)
            if isinstance(fn, Static) and fn.obj is builtins.range:
                args = [self.expr(a) for a in it.args]
                if len(args) == 1:
                    args = [Static(0), args[0], Static(1)]
                elif len(args) == 2:
                    args = [*args, Static(1)]
                return (*args, lambda i: i)
        length, item = self.sequence(it)
        return (Static(0), length, Static(1), item)

    def sequence(self, node):
        """(length, item) of what a `for` iterates over: an array's rows, a list, and
        `zip`/`enumerate` of those; item(i) lowers the i-th element."""
        if _is_call_to(node, "zip") or _is_call_to(node, "enumerate"):
            fn = self.expr(node.func)
            if isinstance(fn, Static) and fn.obj is builtins.zip:
                parts = [self.sequence(a) for a in node.args]
                length = parts[0][0]
                for n, _ in parts[1:]:
                    length = self.call(builtins.min, [length, n], {}, node)
                return length, lambda i: tuple(item(i) for _, item in parts)
            if isinstance(fn, Static) and fn.obj is builtins.enumerate:
                length, item = self.sequence(node.args[0])
                start = (
                    self.expr(node.args[1])
                    if len(node.args) > 1
                    else Static(_keyword(self, node, "start", 0))
                )
                at_zero = isinstance(start, Static) and start.obj == 0

                def numbered(i):
                    number = i if at_zero else self.binop(operator.add, i, start, node)
                    return (number, item(i))

                return length, numbered
        seq = self.expr(node)
        if isinstance(seq, Static) and not isinstance(seq.obj, np.ndarray):
            raise LoweringError(node, "iterating over a compile-time constant is not supported")
        return self.length(seq, node), lambda i: self.index_of(seq, i)

    def length(self, seq, node):
        if isinstance(seq, tuple):
            return Static(len(seq))
        return self.apply(lookup(builtins.len), [seq], {}, node)

    def index_of(self, seq, i):
        if isinstance(seq, tuple):
            raise LoweringError(None, "a loop over a tuple needs a constant index")
        value = self.as_value(seq)
        if isinstance(i, Static):
            return self.getitem(value, ((i.obj,), True))
        from adcompiler.ops.structure import Dyn

        return self.getitem(value, ((Dyn(0),), True), [self.as_value(i)])

    # A loop-carried name may hold a tuple (`state = (h, c)`): each element is a slot.

    def slot_keys(self, carried) -> list[tuple[str, tuple]]:
        """One slot per leaf of each carried name: (name, path into its tuples/dicts)."""
        self.slot_templates = {n: self.env.get(n, _default(n)) for n in carried}
        return [(n, path) for n in carried for path, _ in _leaves(self.slot_templates[n])]

    def read_slot(self, key):
        name, path = key
        value = self.env.get(name, _default(name))
        try:
            for _kind, step in path:
                value = value[step]
        except (KeyError, IndexError, TypeError):
            value = None
        if value is None and path or isinstance(value, (tuple, dict)):
            raise LoweringError(
                None, f"`{name}` must keep the same tuple/dict structure through the loop"
            )
        return value

    def bind_slots(self, keys, values) -> dict:
        by_name: dict[str, list] = {}
        for (name, _), v in zip(keys, values):
            by_name.setdefault(name, []).append(v)
        return {name: _rebuild(self.slot_templates[name], iter(vs)) for name, vs in by_name.items()}

    def slot_values(self, keys, loc) -> list[Value]:
        return [Value(_slot_hint(key), loc=loc) for key in keys]

    def loop_body(self, keys, params, prefix, body, suffix) -> Block:
        """Lower a loop body with the carried slots bound to `params`; yield their next values."""
        saved_env, saved_nodes = self.env, self.nodes
        templates = self.slot_templates
        self.env = {**saved_env, **self.bind_slots(keys, params)}
        self.nodes = []
        try:
            self.follow_roots(self.loop_plans)
            start = dict(self.env)
            prefix()
            self.lower_stmts(body)
            self.statement_start = len(self.nodes)
            suffix()
            yields = [self.as_value(self.read_slot(key)) for key in keys]
            self.loop_trace = (keys, list(params), start, dict(self.env), yields)
            return Block(params=list(params), nodes=self.nodes, yields=yields)
        finally:
            self.env, self.nodes = saved_env, saved_nodes
            self.slot_templates = templates

    def lower_for(self, stmt, carried, start, stop, step, item) -> None:
        loc = self.loc
        keys = self.slot_keys(carried)
        inits = [self.as_value(self.read_slot(key)) for key in keys]
        index = Value(_index_hint(stmt), loc=loc)
        params = self.slot_values(keys, loc)
        self.mark_slots(keys, inits, params)

        def prefix():
            self.statement_start = 0
            self.assign(stmt.target, item(index))

        block = self.loop_body(keys, params, prefix, stmt.body, lambda: None)
        block.params.insert(0, index)
        bounds = [self.as_value(b) for b in (start, stop, step)]
        outputs = self.slot_values(keys, loc)
        self.nodes.append(Node(FOR, [*bounds, *inits], {}, outputs, [block], loc))
        self.env.update(self.bind_slots(keys, outputs))

    def lower_for_as_while(self, stmt, carried, start, stop, step, item) -> None:
        """A `for` that may `break` or `return`: a `while` over an explicit counter."""
        counter = f".i{len([k for k in self.env if k.startswith('.i')])}"
        self.env[counter] = start
        self.env.setdefault(BROKE, Static(False))
        outer_broke = self.env[BROKE]
        self.env[BROKE] = Static(False)
        carried = [counter, *carried]
        if BROKE not in carried:
            carried.append(BROKE)

        def condition():
            more = self.binop(_lt_or_gt(step), self.env[counter], stop, stmt)
            for flag_name in (BROKE, RETURNED):
                flag = self.env.get(flag_name, Static(False))
                if not (isinstance(flag, Static) and flag.obj is False):
                    more = self.boolean(AND, self.negate(flag), more)
            return more

        def prefix():
            self.statement_start = 0
            self.assign(stmt.target, item(self.env[counter]))

        def suffix():
            self.env[counter] = self.binop(operator.add, self.env[counter], step, stmt)

        self.emit_while(carried, condition, stmt.body, prefix, suffix)
        self.env.pop(counter, None)
        self.env[BROKE] = outer_broke

    def lower_while(self, stmt, carried) -> None:
        outer_broke = self.env.get(BROKE, Static(False))
        if any(leaves_block(s, (gast.Break,)) for s in stmt.body):
            self.env[BROKE] = Static(False)
            if BROKE not in carried:
                carried.append(BROKE)

        def condition():
            test = self.expr(stmt.test)
            for flag_name in (BROKE, RETURNED):
                flag = self.env.get(flag_name, Static(False))
                if not (isinstance(flag, Static) and flag.obj is False):
                    test = self.boolean(AND, self.negate(flag), test)
            return test

        self.emit_while(carried, condition, stmt.body, lambda: None, lambda: None)
        self.env[BROKE] = outer_broke

    def emit_while(self, carried, condition, body, prefix, suffix) -> None:
        loc = self.loc
        keys = self.slot_keys(carried)
        inits = [self.as_value(self.read_slot(key)) for key in keys]
        cond_params = self.slot_values(keys, loc)
        body_params = self.slot_values(keys, loc)
        self.mark_slots(keys, inits, cond_params, body_params)
        saved_env, saved_nodes = self.env, self.nodes
        templates = self.slot_templates  # a loop in the condition (a generator) has its own
        self.env = {**saved_env, **self.bind_slots(keys, cond_params)}
        self.nodes = []
        try:
            self.follow_roots(self.loop_plans)
            flag = self.as_value(condition())
            cond_block = Block(params=cond_params, nodes=self.nodes, yields=[flag])
        finally:
            self.env, self.nodes = saved_env, saved_nodes
            self.slot_templates = templates
        body_block = self.loop_body(keys, body_params, prefix, body, suffix)
        outputs = self.slot_values(keys, loc)
        self.nodes.append(Node(WHILE, inits, {}, outputs, [cond_block, body_block], loc))
        self.env.update(self.bind_slots(keys, outputs))

    # -- expressions with control flow ----------------------------------------

    def boolean(self, op, a, b):
        return self.emit(op, [self.as_value(a), self.as_value(b)], {}, op.name)

    def negate(self, a):
        if isinstance(a, Static):
            return Static(not a.obj)
        return self.emit(NOT, [self.as_value(a)], {}, "not")

    def expr_IfExp(self, node):  # noqa: N802 - named after gast's node type
        cond = self.expr(node.test)
        if isinstance(cond, Static):
            return self.expr(node.body if cond.obj else node.orelse)
        then_env = {**self.env, ".value": None}
        parts = []
        for branch in (node.body, node.orelse):
            outer_nodes, outer_env = self.nodes, self.env
            self.nodes, self.env = [], dict(then_env)
            self.env[".value"] = self.expr(branch)
            parts.append((self.nodes, self.env, "fall"))
            self.nodes, self.env = outer_nodes, outer_env
        self.branch(self.as_value(cond), parts[0], parts[1])
        value = self.env.pop(".value")
        return value

    def expr_BoolOp(self, node):  # noqa: N802
        is_and = isinstance(node.op, gast.And)
        result = self.expr(node.values[0])
        for operand in node.values[1:]:
            value = self.expr(operand)
            if isinstance(result, Static):
                if bool(result.obj) != is_and:  # `False and x`, `True or x`
                    continue
                result = value
                continue
            result = self.boolean(AND if is_and else OR, result, value)
        return result

    def lower_print(self, call) -> None:
        args = [
            self.fstring(a) if isinstance(a, gast.JoinedStr) else self.as_value(self.expr(a))
            for a in call.args
        ]
        keywords = tuple(
            (k.arg, self.expr(k.value).obj) for k in call.keywords if k.arg in ("sep", "end")
        )
        self.nodes.append(Node(PRINT, args, {"keywords": keywords}, [], loc=self.loc))

    def lower_append(self, call) -> None:
        """``lst.append(v)``: a new list value (symbolic while its length is known)."""
        name = call.func.value.id
        current = self.name(call.func.value)
        item = self.expr(call.args[0])
        if isinstance(current, tuple):
            self.rebind(current, (*current, item), call)
        elif isinstance(current, Value):
            if isinstance(item, (tuple, dict)):
                raise LoweringError(
                    call,
                    "a list built in a loop holds arrays or numbers, not tuples or dicts",
                    "append each part to a list of its own",
                )
            out = self.emit(LIST_APPEND, [current, self.as_value(item)], {}, name)
            out.hint, out.role = name, "primal"
            self.rebind(current, out, call)
        else:
            raise LoweringError(call, f"cannot append to `{name}`")

    def lists_to_runtime(self, stmt, carried, grown=()) -> None:
        """A list a loop appends to (`grown`: through a function it calls) becomes a list
        at run time (its length is not known), for every name and function holding it."""
        appended = {n.func.value.id for s in stmt.body for n in gast.walk(s) if is_append(n)}
        for name in (appended | set(grown)) & set(carried):
            value = self.env.get(name)
            if isinstance(value, tuple):
                out = self.emit(MAKE_LIST, [self.as_value(v) for v in value], {}, name)
                out.hint, out.role = name, "primal"
                self.rebind(value, out, stmt)

    def fstring(self, node) -> Value:
        """An f-string given to print: the formatted values are inputs, the text a template."""
        parts, values = [], []
        for part in node.values:
            if isinstance(part, gast.Constant):
                parts.append(("text", part.value))
                continue
            spec = ""
            if part.format_spec is not None:
                pieces = [self.expr(p) for p in part.format_spec.values]
                if not all(isinstance(p, Static) for p in pieces):
                    raise LoweringError(node, "a format spec must be constant")
                spec = "".join(str(p.obj) for p in pieces)
            values.append(self.as_value(self.expr(part.value)))
            parts.append(("value", part.conversion, spec))
        return self.emit(FSTRING, values, {"parts": tuple(parts)}, "text")

    def lower_assert(self, stmt) -> None:
        test = self.expr(stmt.test)
        message = self.expr(stmt.msg).obj if stmt.msg is not None else "assertion failed"
        if isinstance(test, Static):
            if not test.obj:
                raise LoweringError(stmt, "this assert always fails")
            return
        self.nodes.append(
            Node(ASSERT, [self.as_value(test)], {"message": str(message)}, [], loc=self.loc)
        )


_FLOWING = {RESULT, RETURNED, BROKE}


def _runs(start, stop, step) -> bool:
    """Whether `range(start, stop, step)`, known when compiling, is not empty."""
    bounds = [b.obj if isinstance(b, Static) else None for b in (start, stop, step)]
    if not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
        return False
    return len(range(*bounds)) > 0


def _default(name):
    if name in FLAG_DEFAULTS:
        return Static(FLAG_DEFAULTS[name])
    if name == RESULT:
        return Static(None)
    return UNDEFINED


def _same(a, b) -> bool:
    if a is b:
        return True
    if isinstance(a, Static) and isinstance(b, Static):
        try:
            return type(a.obj) is type(b.obj) and bool(a.obj == b.obj)
        except (ValueError, TypeError):
            return False
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return False


def is_append(node) -> bool:
    return (
        isinstance(node, gast.Call)
        and isinstance(node.func, gast.Attribute)
        and node.func.attr == "append"
        and isinstance(node.func.value, gast.Name)
        and len(node.args) == 1
    )


def _is_call_to(expr, name: str) -> bool:
    return isinstance(expr, gast.Call) and isinstance(expr.func, gast.Name) and expr.func.id == name


def _slot_hint(key) -> str:
    name, path = key
    base = name.lstrip(".").rstrip("0123456789") if name.startswith(".i") else name.lstrip(".")
    suffix = "_".join(str(step) for _, step in path)
    hint = f"{base}_{suffix}" if suffix else base
    return hint if hint.isidentifier() else base


def _leaves(value, path=()):
    """(path, leaf) for every leaf of nested tuples and dicts; path steps are (kind, key)."""
    if isinstance(value, tuple):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, (*path, ("t", i)))]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, (*path, ("d", k)))]
    return [(path, value)]


def _rebuild(template, values):
    """`template`'s structure with its leaves taken in order from the iterator `values`."""
    if isinstance(template, tuple):
        return tuple(_rebuild(v, values) for v in template)
    if isinstance(template, dict):
        return {k: _rebuild(v, values) for k, v in template.items()}
    return next(values)


def _index_hint(stmt) -> str:
    """The loop index is named after the target of `for t in range(...)`, else `i`."""
    it = stmt.iter
    is_range = (
        isinstance(it, gast.Call) and isinstance(it.func, gast.Name) and it.func.id == "range"
    )
    if is_range and isinstance(stmt.target, gast.Name):
        return stmt.target.id
    return "i"


def _lt_or_gt(step):
    import operator

    if isinstance(step, Static) and step.obj < 0:
        return operator.gt
    return operator.lt


def _static_items(value):
    """The elements of a tuple/list known when compiling, or None."""
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return [Static(k) for k in value]
    if isinstance(value, Static) and isinstance(value.obj, (list, tuple)):
        return [Static(v) for v in value.obj]
    return None


def _keyword(lowering, call, name, default):
    """A compile-time keyword argument of a call (e.g. `enumerate(x, start=1)`)."""
    for k in call.keywords:
        if k.arg == name:
            value = lowering.expr(k.value)
            if not isinstance(value, Static):
                raise LoweringError(call, f"`{name}=` must be known when compiling")
            return value.obj
    return default
