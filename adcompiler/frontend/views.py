"""Writes through NumPy views, followed while lowering (mixed into `Lowering`).

NumPy's views share memory: after ``v = y[1:]``, ``v[0] = 5.0`` changes ``y[1]``, and
``y[1] = 5.0`` changes ``v[0]``. In the IR a write makes a new value, so the lowering
follows the aliasing itself. Every value made by an operator with a `View` trait (see
adcompiler.ops.core) is *linked* to the input it may be a view of; links chain up to a
*root*, an array that is not a view. A write into any member of such a family

1. is written into the member (``setitem``), then carried up the chain to the root by
   each operator's ``write_back`` (``y = setitem(y, v_1, index=1:)``, ``x = v_1.T``);
   through an `identity` view (`ad.stop_gradient`) the same write is made into the
   input;
2. then every name that holds a member of the family, in this function and in the
   functions it is inlined into, and in the tuples and dicts they hold, is given the
   member again, made from the new root (``v = y_1[1:]``).

What cannot be followed exactly is refused with a located error: a write through a
view that NumPy may or may not make (``np.reshape``, ``np.ravel``: a copy where the
memory layout needs one; ``x[i]`` with `i` known only at run time, an index array
makes a copy), through a read-only view (``np.broadcast_to``), into an argument, or
into an array kept in a list. A name that holds such a may-be-view of an array that
is then written becomes *stale*: reading it again is the error (its value would depend
on what NumPy chose), unless the write provably misses its entries. A value that a loop
or an `if` may leave holding an argument or another name's array (``z = x if c else
2 * x``) is marked (`Shared`): writing into it is the error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import gast

from adcompiler.frontend.base import IN_REGION_HINT, LoweringError, Stale
from adcompiler.frontend.control import POISONED, assigned_names, is_append
from adcompiler.ops.core import Op, View
from adcompiler.ops.mutation import SETITEM
from adcompiler.ops.numpy_ops import ADD, SUBTRACT
from adcompiler.ops.structure import GETITEM, Dyn
from adcompiler.ssa import Loc, Node, Value, walk

COPY_HINT = "take a copy where you make it (`.copy()`), or write into the array itself"


@dataclass(eq=False)
class Link:
    """`value` may be a view of `parent`, made by `node` (an operator with a View trait)."""

    node: Node | None  # None for an "opaque" link (a value out of an `if` or a loop)
    parent: Value
    kind: str  # "always", "scalar", "layout", "maybe" (View.kind_for), or "opaque"
    view: View
    value: Value
    proven: bool = False  # a write through it showed that it is an array (not a scalar)

    def followable(self) -> bool:
        """Whether the member can be made again from a new parent, exactly as NumPy."""
        return self.kind == "always" or self.proven


@dataclass(frozen=True)
class Shared:
    """Why a value (out of a loop or an `if`, or carried through a loop) may share its
    memory with an array the compiler cannot follow: it may be the argument `argument`,
    or the array the name `other` holds too."""

    argument: str | None = None
    other: str | None = None
    surely: bool = False  # the argument itself (or a view of it), not a value that may be


class ViewState:
    """What the lowering of one function and the helpers inlined into it share."""

    def __init__(self):
        self.links: dict[int, Link] = {}  # id of a value -> its link
        self.producer: dict[int, Node] = {}  # id of a value -> the node that made it
        self.held: dict[int, Loc | None] = {}  # id of a value kept in a run-time list
        self.hidden = 0  # hidden names given to arrays only views of which are named
        # id of a value out of (or carried through) a loop or an `if` that may be an
        # argument, or an array another name may hold too -> Shared: no write into it
        self.shared: dict[int, Shared] = {}


class Views:
    """The view-following half of `Lowering` (mixed into it)."""

    def share_views(self, outer) -> None:
        """Lowering a helper inlined into `outer`: the same links, and the same arrays the
        caller passed in (which a write must not change)."""
        self.views, self.outer, self.parameters = outer.views, outer, outer.parameters

    # -- recording ---------------------------------------------------------

    def note_node(self, node: Node) -> None:
        """Record what `node` makes: a possible view of an input, values kept in a list."""
        state = self.views
        for out in node.outputs:
            state.producer[id(out)] = node
        view = node.op.view
        if view is not None and node.outputs and view.input < len(node.inputs):
            kind = view.kind_for(node.attrs)
            if kind is not None:
                parent = node.inputs[view.input]
                out = node.outputs[0]
                state.links[id(out)] = Link(node, parent, kind, view, out)
        if node.op.holds is not None:
            for v in node.inputs[node.op.holds :]:
                state.held.setdefault(id(v), node.loc)

    def link_of(self, value) -> Link | None:
        return self.views.links.get(id(value)) if isinstance(value, Value) else None

    def root_of(self, value: Value) -> Value:
        link = self.link_of(value)
        while link is not None:
            value = link.parent
            link = self.link_of(value)
        return value

    def family(self, root: Value) -> list[Value]:
        """The values known to share `root`'s memory (the root first)."""
        members = [root]
        for link in list(self.views.links.values()):
            value = link.value
            if value is not root and self.root_of(value) is root:
                members.append(value)
        return members

    def views_held(self, value: Value) -> bool:
        """Whether a name (here or in a function this one is inlined into, or in a tuple
        or dict one holds) holds a view of `value`, or `value` is itself one."""
        if self.link_of(value) is not None:
            return True
        scope = self
        while scope is not None:
            for held in scope.env.values():
                for leaf in _leaves(held):
                    if leaf is not value and self.root_of(leaf) is value:
                        return True
            scope = scope.outer
        return False

    # -- values a region may have joined with another array -----------------------

    def shared_with(self, value) -> Shared | None:
        """Why a write into `value` (or into a view of it) would change an array the
        compiler does not follow: it is (a view of) an argument, or a value out of a
        region that may be one, or that may be another name's array. None if not."""
        if not isinstance(value, Value):
            return None
        root = self.root_of(value)
        if root in self.parameters:
            return Shared(argument=root.hint, surely=True)
        return self.views.shared.get(id(root))

    def sharing(self, value, env: dict, own: int, ignore=(), name=None) -> Shared | None:
        """`shared_with(value)`, or, for `value` at the edge of a region (`env` there),
        held by `own` names or tuple/dict items of the region's slots: another name (not
        in `ignore`) that holds it or a view of it, here or in a caller."""
        why = self.shared_with(value)
        if why is not None or not isinstance(value, Value):
            return why
        root = self.root_of(value)
        holders = []
        scope, names = self, env
        while scope is not None:
            for n, held in names.items():
                if n.startswith(".") or scope is self and n in ignore:
                    continue
                holders += [n for leaf in _leaves(held) if self.root_of(leaf) is root]
            scope = scope.outer
            names = scope.env if scope is not None else {}
        if len(holders) > own:
            return Shared(other=next((n for n in holders if n != name), holders[0]))
        return None

    def mark_shared(self, values, why: Shared | None, surely: bool = False) -> None:
        """Mark `values` (`surely`: they are the argument, not values that may be it)."""
        if why is not None:
            why = replace(why, surely=why.surely and surely)
            for v in values:
                if isinstance(v, Value):
                    self.views.shared[id(v)] = why

    def mark_slots(self, keys, inits, *params) -> None:
        """Before a loop body: a slot whose first value may be an argument or another
        name's array (or whose next values may be, `loop_shared`) is marked, in each list
        of `params` (the condition's, the body's). A slot of an array `region_families`
        planned is followed exactly: marked only where it may be an argument."""
        planned = {name for _, name, _ in self.loop_plans}
        for k, (key, init) in enumerate(zip(keys, inits)):
            if key[0] in planned:  # (the array itself all through the loop)
                why = self.loop_shared.get(key) or self.shared_with(init)
                self.mark_shared([p[k] for p in params], why, surely=key not in self.loop_shared)
            else:
                why = self.loop_shared.get(key) or self.sharing(init, self.env, 1, (), key[0])
                self.mark_shared([p[k] for p in params], why)

    def mark_branch_outputs(self, merged, outputs, plans, envs) -> None:
        """After an `if`: an output whose value in a branch may be an argument, or an
        array another name holds there (`z = y` in one branch only), is marked."""
        planned = {name for _, name, _ in plans}
        names: dict[int, set] = {}
        for name, out in outputs:
            names.setdefault(id(out), set()).add(name)
        for name, out in outputs:
            if id(out) in self.views.shared:
                continue
            for value, env in zip(merged[name][0], envs):
                if name.split("#")[0] in planned:
                    why = self.shared_with(value)
                else:
                    why = self.sharing(value, env, len(names[id(out)]), (), name.split("#")[0])
                if why is not None:
                    self.mark_shared([out], why)
                    break

    def next_shared(self, stmt, carried) -> dict:
        """After a loop body: the slots whose next value may be an argument or another
        name's array at the end of an iteration (`loop_trace`)."""
        keys, _, _, end, yields = self.loop_trace
        planned = {name for _, name, _ in self.loop_plans}
        local = assigned_names(stmt.body) - set(carried)  # dead at the end of an iteration
        found = {}
        for key, y in zip(keys, yields):
            if key[0] in planned:
                why = self.shared_with(y)
            else:
                why = self.sharing(y, end, 1, local, key[0])
            if why is not None:
                found[key] = why
        return found

    def mark_loop(self, stmt, carried, once: bool) -> dict:
        """After a loop's node: its outputs are marked where their slots are (`once`: the
        body runs at least once, so an output is one of the slot's next values only).
        Returns the slots not marked whose next values may be shared: the loop is lowered
        again with them marked (`mark_slots`)."""
        keys, params, _, _, _ = self.loop_trace
        found = self.next_shared(stmt, carried)
        for key, param, out in zip(keys, params, self.nodes[-1].outputs):
            why = found.get(key)
            if not once:
                why = why or self.views.shared.get(id(param))
            self.mark_shared([out], why)
        marked = {key for key, param in zip(keys, params) if id(param) in self.views.shared}
        return {key: why for key, why in found.items() if key not in marked}

    def shared_error(
        self, target, name: str, why: Shared, what: str = "writing into it", suggestion=None
    ):
        if why.argument is not None:
            if name == why.argument:
                said = (
                    f"writing into the argument `{name}`"
                    if what == "writing into it"
                    else f"`{name}` is an argument: {what}"
                )
                return LoweringError(
                    target,
                    f"{said} would change the caller's array",
                    suggestion or f"copy it first: `{name} = {name}.copy()`",
                )
            return LoweringError(
                target,
                f"`{name}` {'is' if why.surely else 'may be'} the argument `{why.argument}` "
                f"(or a view of it): {what} "
                "would change the caller's array",
                suggestion or f"copy it where you assign it: `{name} = {why.argument}.copy()`",
            )
        return LoweringError(
            target,
            f"`{name}` may hold the same array as `{why.other}` (a loop or an `if` may join "
            f"them): {what} would change `{why.other}` too, which adcompiler cannot follow",
            suggestion
            or f"take a copy where you assign it (`{name} = ....copy()`), or write into "
            f"`{why.other}` directly",
        )

    # -- writing -----------------------------------------------------------

    def write(self, target, name: str, member: Value, value, template, dyn) -> None:
        """``name[template] = value`` (`template` None: ``name op= value`` replaced the
        whole array by `value`), where `name` holds `member`: write it through every
        view that shares the memory, or refuse."""
        path = []
        link = self.link_of(member)
        while link is not None:
            path.append(link)
            link = self.link_of(link.parent)
        root = path[-1].parent if path else member
        for link in path:
            if not link.view.writable:
                what = f"`{name}` is a view made by `{_spelled(link.node.op)}`"
                raise LoweringError(
                    target,
                    f"{what}, which NumPy makes read-only: writing into it raises",
                    "write into the array it views, or take a copy first (`.copy()`)",
                )
            if link.kind == "scalar" and template is not None:
                continue  # `r = H[0]; r[1] = v`: r is a row (a view), not a number
            if link.kind != "always" and not link.proven:
                raise LoweringError(
                    target,
                    f"`{name}` may be a view of another array or a copy "
                    f"({_why(link)}): adcompiler cannot tell which, so it cannot follow "
                    "this write",
                    COPY_HINT,
                )
            if link.view.write_back is None and not link.view.identity:
                raise LoweringError(
                    target,
                    f"`{name}` is a view made by `{_spelled(link.node.op)}`: a write through "
                    "it is not supported",
                    COPY_HINT,
                )
        if root in self.parameters:
            through = f" through `{name}`, a view of it" if path else ""
            raise LoweringError(
                target,
                f"writing into an argument{through} would change the caller's array",
                "copy it first: `x = x.copy()`",
            )
        if id(root) in self.views.shared:
            raise self.shared_error(target, name, self.views.shared[id(root)])
        for v in self.family(root):
            if id(v) in self.views.held:
                where = self.views.held[id(v)]
                at = f" (line {where.line})" if where is not None else ""
                raise LoweringError(
                    target,
                    f"the array `{name}` writes into is kept in a list{at}: NumPy's list "
                    "would show this write, adcompiler's would not",
                    "append a copy to the list (`.append(v.copy())`)",
                )
        for link in path:
            if link.kind == "scalar":
                link.proven = True
        if any(link.view.identity for link in path):
            # `stop_gradient(y)[1:]` has the values of `y[1:]`: write through that, so
            # the entries the write leaves keep their derivatives through `y`
            member, path = self.without_identities(root, path)
        if template is None:
            new = self.as_value(value)
        else:
            written = [member, self.as_value(value), *dyn]
            new = self.emit(SETITEM, written, {"index": template}, name)
            new.hint, new.role = name, "primal"  # a statement of its own
        last = self.views.producer.get(id(new))
        for link in path:
            parent = link.parent
            new = link.view.write_back(self.emit_view_op, link.node, new)
            # the input's own new value, not a view of the view: names that hold views
            # of it are made again from the root below
            self.views.links.pop(id(new), None)
            made = self.views.producer.get(id(new))
            partial = made is not None and made.op is SETITEM and made.inputs[0] is parent
            last = made if partial else None
            if partial:
                new.hint, new.role = parent.hint, "primal"
        new.role = "primal"
        new.hint = next((n for n, held in self.env.items() if held is root), name)
        self.refresh(root, new, last)

    def without_identities(self, root: Value, path: list[Link]) -> tuple[Value, list[Link]]:
        """The member `path` leads to, made again from `root` without its identity views
        (`stop_gradient`): the same values; and the path of links up from it."""
        member, links = root, []
        for link in reversed(path):
            if link.view.identity:
                continue
            member = self.remake(link, member, link.value)
            links.insert(0, self.link_of(member))
        return member, links

    def emit_view_op(self, fn, inputs, attrs) -> Value:
        """`emit` for `View.write_back`: `fn` is an Op or what the registry maps to one."""
        from adcompiler.ops import lookup

        op = fn if isinstance(fn, Op) else lookup(fn)
        return self.emit(op, inputs, attrs, op.name)

    def refresh(self, old: Value, new: Value, write: Node | None) -> None:
        """Every name (in this function and those it is inlined into) that held `old` or
        a view of it now holds `new` or the same view of `new`; a may-be-view that the
        write may have changed becomes stale. `write`: the setitem that made `new` from
        `old`, if the write was one."""
        made: dict[int, object] = {id(old): new}

        def renew(v):
            if id(v) in made:
                return made[id(v)]
            link = self.link_of(v)
            result = None
            if link is not None:
                parent = renew(link.parent)
                if isinstance(parent, Stale):
                    result = parent
                elif parent is not None:
                    if link.followable() or (
                        link.parent is old
                        and write is not None
                        and link.node is not None
                        and _disjoint(
                        link.node, write, self.views.producer
                    )
                    ):
                        result = self.remake(link, parent, v)
                    else:
                        result = Stale(
                            v.hint,
                            f"may be a view of the array written at line {self.loc.line} "
                            f"or a copy ({_why(link)}): NumPy's value depends on which",
                            COPY_HINT,
                        )
            made[id(v)] = result
            return result

        def replace(held):
            if isinstance(held, Value):
                got = renew(held)
                return held if got is None else got
            if isinstance(held, tuple):
                return tuple(replace(h) for h in held)
            if isinstance(held, dict):
                return {k: replace(h) for k, h in held.items()}
            return held

        # inside an `if` or a loop, the functions this one is inlined into see the write
        # after it (`region_families`); a function that defined this one and returned
        # (a closure's variables) would not: refused
        now, later = self.enclosing_scopes()
        callers, scope = set(), self
        while scope is not None:
            callers.add(id(scope))
            scope = scope.outer
        for scope in later:
            if id(scope) not in callers and any(
                replace(held) is not held for held in scope.env.values()
            ):
                raise LoweringError(
                    None,
                    "this write, inside an `if` or a loop, changes an array that a "
                    "function defining this one holds: adcompiler cannot follow it there",
                    IN_REGION_HINT,
                )
        for scope in now:
            for name, held in list(scope.env.items()):
                got = replace(held)
                if isinstance(got, Stale):
                    got = Stale(name, got.message, got.suggestion)
                if got is not held:
                    scope.env[name] = got

    def remake(self, link: Link, parent: Value, old_view: Value) -> Value:
        """The view `link` of `parent` (the same operator, index and attributes)."""
        node = link.node
        inputs = list(node.inputs)
        inputs[link.view.input] = parent
        out = self.emit(node.op, inputs, node.attrs, old_view.hint)
        out.hint, out.role = old_view.hint, old_view.role
        new_link = self.link_of(out)
        if new_link is not None:
            new_link.proven = link.proven
        return out

    # -- regions: `if` and loops -------------------------------------------------

    def region_families(
        self, stmts, node, what: str, written=()
    ) -> list[tuple[Value, str, list[str]]]:
        """The arrays with named views that the statements of a region (a loop body,
        the branches of an `if`) write into (`written`: names written into there other
        than by `name[...] = ` and `name op= `): (root, a name holding it, the names
        holding its views). Their views are not carried through the region as values
        of their own: they are made again from the root where it changes. Refused where
        the region assigns one of these names again (the view would keep the old array)."""
        touched = written_names(stmts) | set(written)
        rebound = rebound_names(stmts)
        caller = set()  # arrays the functions this one is inlined into hold
        scope = self.outer
        while scope is not None:
            caller.update(id(leaf) for held in scope.env.values() for leaf in _leaves(held))
            scope = scope.outer
        families: dict[int, tuple[Value, list[str], list[str], list[bool]]] = {}
        for name, held in self.env.items():
            for leaf in _leaves(held):
                root = self.root_of(leaf)
                _, roots, views, seen = families.setdefault(id(root), (root, [], [], [False]))
                # a view of it is held, or a tuple or dict or the caller holds it: they
                # see a write into it too
                seen[0] = seen[0] or held is not root or id(leaf) in caller
                if held is root:
                    roots.append(name)
                elif name not in views:
                    views.append(name)
        plans = []
        appended = {
            n.func.value.id for stmt in stmts for n in gast.walk(stmt) if is_append(n)
        }
        for root, roots, views, seen in families.values():
            # a list the region appends to is a list of its own there (it holds the
            # array: a write into it is refused, see `write`)
            views = [n for n in views if n not in appended]
            names = set(roots) | set(views)
            arrays = {n for n in names if isinstance(self.env[n], Value)}  # not `d["k"] = v`
            # two names of one array (`z = y`) that the region writes into and neither
            # assigns again: the other is made again from the array, as a view would be
            # (one assigned again: its slot is marked, see `mark_slots`)
            aliased = len(roots) > 1 and not set(roots) & rebound
            if not (seen[0] or aliased) or not arrays & touched:
                continue
            # a tuple or dict holding the array that the region changes: its entries
            # would be values of their own there
            again = sorted(names & rebound | {n for n in views if n in touched and n not in arrays})
            if again:
                base = f"`{roots[0]}`" if roots else "an array"
                if views:
                    how = "is a view of" if isinstance(self.env[views[0]], Value) else "holds"
                    shared = f"`{views[0]}` {how} {base}"
                elif len(roots) > 1:
                    shared = f"`{roots[1]}` and `{roots[0]}` hold the same array"
                else:
                    shared = f"`{roots[0]}` holds an array of the caller"
                raise LoweringError(
                    node,
                    f"{shared}, and `{again[0]}` is assigned again in this {what}: "
                    f"adcompiler follows writes into shared arrays across {what}s only while "
                    "each name keeps its array",
                    f"take a copy where you make the view (`.copy()`), or make it in the {what}",
                )
            if not roots:  # only views of it are named: carry the array under a hidden name
                self.views.hidden += 1
                roots.append(f".array{self.views.hidden}")
                self.env[roots[0]] = root
            plans.append((root, roots[0], views + roots[1:]))
        return plans

    def follow_roots(self, plans) -> None:
        """After a region: the names in `plans` hold their root's new value; make their
        views again from it."""
        for old, name, _ in plans:
            new = self.env.get(name)
            if isinstance(new, Value) and new is not old:
                self.refresh(old, new, None)

    def link_region_outputs(self, pairs, envs) -> None:
        """`pairs`: (output, [its value in each part]) of an `if` or a loop; `envs`: the
        environment at the end of each part. An output that is a view in some part is a
        view that cannot be followed ("opaque"): of the array a name holds in every part
        (that name's value now), or of an array no name holds."""
        for out, values in pairs:
            if not any(self.link_of(v) is not None for v in values):
                continue
            names = None
            for v, env in zip(values, envs):
                root = self.root_of(v) if isinstance(v, Value) else None
                holding = {n for n, held in env.items() if held is root}
                names = holding if names is None else names & holding
            parent = next(
                (self.env[n] for n in sorted(names or ()) if isinstance(self.env.get(n), Value)),
                Value("array"),
            )
            self.views.links[id(out)] = Link(None, parent, "opaque", View(), out)

    def after_loop(self, stmt, plans, trace, final: bool) -> list[str]:
        """After a loop's node is emitted: views of the arrays it wrote are made again
        from their new values; a view made in the loop and carried out of it is opaque.
        Returns the names that changed in the loop but are not carried by it (a write
        through a view made in the loop): the loop is lowered again carrying them (or,
        `final`, refused). Refused: a view carried from one iteration into the next
        and read there, in a loop that writes into an array (the write would show through it)."""
        node = self.nodes[-1]  # the loop
        keys, params, start, end, yields = trace
        slots = {name for name, _ in keys}
        slots |= assigned_names([*stmt.body, *([stmt.target] if hasattr(stmt, "target") else [])])
        views = {v for _, _, names in plans for v in names}
        changed = []
        for name, held in start.items():
            now = end.get(name)
            if name in slots or name in views or now is held or now is POISONED:
                continue
            if isinstance(now, Stale):  # a may-be-view whose array the loop wrote
                self.env[name] = now
            else:
                changed.append(name)
        if changed and not final:
            return changed  # (before anything outside the loop changes)
        if changed:
            raise LoweringError(
                stmt,
                f"`{changed[0]}` is written into in this loop where adcompiler cannot carry "
                "it (through a view, or by a helper)",
                f"assign it in the loop: `{changed[0]} = ...`, or write into it directly",
            )
        self.follow_roots(plans)
        self.check_lists_in_loop(stmt, node, params)
        pairs = []
        for (name, _), param, y, out in zip(keys, params, yields, node.outputs):
            if self.link_of(y) is None:
                continue
            if _writes(node) and _reads(node.regions[-1], param):
                raise LoweringError(
                    stmt,
                    f"`{name}` holds a view made in an earlier iteration of this loop, and "
                    "is read again: a write into its array would show through it",
                    f"take a copy where you make it (`{name} = ....copy()`)",
                )
            pairs.append((out, [y]))
        self.link_region_outputs(pairs, [end])
        return []

    def array_object(self, v: Value) -> Value:
        """The value that stands for the NumPy array object `v` is (or is a view of):
        through views to their root, through writes (`setitem`) to the array written."""
        while True:
            link = self.link_of(v)
            if link is not None:
                v = link.parent
                continue
            made = self.views.producer.get(id(v))
            if made is not None and made.op is SETITEM:
                v = made.inputs[0]
                continue
            return v

    def check_lists_in_loop(self, stmt, node: Node, params) -> None:
        """A loop that appends a carried array (or a view of it) to a list and writes
        into that array: the list would see the writes of later iterations. Refused;
        an array appended in the loop counts as held by a list after it."""
        slot = {id(p): k for k, p in enumerate(params)}
        appended: dict[int, Loc | None] = {}
        for n in walk(node.regions[-1]):
            if n.op.holds is not None:
                for v in n.inputs[n.op.holds :]:
                    k = slot.get(id(self.array_object(v)))
                    if k is not None:
                        appended.setdefault(k, n.loc)
        for n in walk(node.regions[-1]):
            if n.op is SETITEM and slot.get(id(self.array_object(n.inputs[0]))) in appended:
                raise LoweringError(
                    stmt,
                    "this loop appends an array (or a view of it) to a list and writes into "
                    "it: NumPy's list would show the writes of later iterations, adcompiler's "
                    "would not",
                    "append a copy to the list (`.append(v.copy())`)",
                )
        for k, loc in appended.items():
            if k < len(node.outputs):
                self.views.held.setdefault(id(node.outputs[k]), loc)

    def stale_error(self, node, stale: Stale):
        return LoweringError(node, f"`{stale.name}` {stale.message}", stale.suggestion)


def _writes(loop: Node) -> bool:
    """Whether `loop` writes into any array (a `setitem` anywhere in its regions): only then
    can a view carried from one iteration into the next see a write it should not."""
    return any(n.op is SETITEM for region in loop.regions for n in walk(region))


def _reads(block, value: Value) -> bool:
    """Whether `block` (or a region in it) reads `value`."""
    if any(y is value for y in block.yields):
        return True
    for node in block.nodes:
        if any(v is value for v in node.inputs):
            return True
        if any(_reads(region, value) for region in node.regions):
            return True
    return False


def written_names(stmts) -> set[str]:
    """Names whose array the statements write into: `v[i] = w`, `v += w`."""
    out = set()
    for stmt in stmts:
        for n in gast.walk(stmt):
            if isinstance(n, gast.AugAssign) and isinstance(n.target, gast.Name):
                out.add(n.target.id)
            elif (
                isinstance(n, gast.Subscript)
                and isinstance(n.ctx, gast.Store)
                and isinstance(n.value, gast.Name)
            ):
                out.add(n.value.id)
    return out


def rebound_names(stmts) -> set[str]:
    """Names the statements assign a new object to (`v = ...`, loop targets); not `v += w`
    or `v[i] = w`, which write into the array `v` holds."""
    augmented = {
        id(n.target)
        for stmt in stmts
        for n in gast.walk(stmt)
        if isinstance(n, gast.AugAssign) and isinstance(n.target, gast.Name)
    }
    return {
        n.id
        for stmt in stmts
        for n in gast.walk(stmt)
        if isinstance(n, gast.Name) and isinstance(n.ctx, gast.Store) and id(n) not in augmented
    }


def _leaves(held):
    if isinstance(held, Value):
        yield held
    elif isinstance(held, tuple):
        for h in held:
            yield from _leaves(h)
    elif isinstance(held, dict):
        for h in held.values():
            yield from _leaves(h)


def _spelled(op: Op) -> str:
    return op.spelling if isinstance(op.spelling, str) and "_" not in op.spelling else op.name


def _why(link: Link) -> str:
    if link.kind == "layout":
        return (
            f"`{_spelled(link.node.op)}` makes a view or a copy as the memory layout and "
            "type of its input allow"
        )
    if link.kind == "ndim":
        return (
            f"`{_spelled(link.node.op)}` makes a view of some inputs and a new array of "
            "others, by their number of dimensions"
        )
    if link.kind == "scalar":
        return "an integer index gives a number, not a view, where it picks one element"
    if link.kind == "maybe":
        return "an index known only at run time may be an index array, which copies"
    return "it comes out of an `if` or a loop that chose between views or made one"


def _disjoint(view: Node, write: Node, producer: dict[int, Node]) -> bool:
    """Whether the index of the view `view` (``x[a, ...]``) and of the write `write`
    (``x[b, ...] = v``) provably pick different entries (their first parts: two
    different integers, an integer outside a slice, or `i` and `i + c` with c != 0)."""
    if view.op is not GETITEM or write.op is not SETITEM:
        return False
    a, b = view.attrs["index"][0][0], write.attrs["index"][0][0]

    def dyn(part, node, skip):  # the value of a run-time part
        return node.inputs[skip + part.k] if isinstance(part, Dyn) else None

    if isinstance(a, Dyn) and isinstance(b, Dyn):
        return _offset(dyn(a, view, 1), dyn(b, write, 2), producer) not in (None, 0)
    if any(
        isinstance(p, Dyn)
        or isinstance(p, slice)
        and any(isinstance(e, Dyn) for e in (p.start, p.stop, p.step))
        for p in (a, b)
    ):
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    if isinstance(a, int) and isinstance(b, int):
        return a != b
    if isinstance(a, slice) and isinstance(b, int):
        return not _in_slice(b, a)
    if isinstance(b, slice) and isinstance(a, int):
        return not _in_slice(a, b)
    return False


def _offset(x: Value, y: Value, producer: dict[int, Node]) -> int | None:
    """c if `y` is `x + c` (or x is y + (-c)) for a constant integer c, else None."""
    if x is y:
        return 0
    for a, b, sign in ((x, y, 1), (y, x, -1)):
        node = producer.get(id(b))
        if node is not None and node.op in (ADD, SUBTRACT) and node.inputs[0] is a:
            c = node.inputs[1].const if node.inputs[1].is_const else None
            if isinstance(c, int) and not isinstance(c, bool):
                return sign * (c if node.op is ADD else -c)
    return None


def _in_slice(i: int, s: slice) -> bool:
    if i < 0 or (s.start or 0) < 0 or (s.stop is not None and s.stop < 0):
        return True
    return (
        (s.start or 0) <= i
        and (s.stop is None or i < s.stop)
        and ((i - (s.start or 0)) % (s.step or 1) == 0)
    )
