"""Containers known when compiling: tuples, dicts, lists built from literals.

A tuple, a list literal or a dict with constant keys is tracked symbolically:
a Python tuple or dict of IR values. Packing, unpacking, constant indexing,
`d["key"] = v`, `.items()`, and comprehensions over them cost nothing at run
time, and a loop over one is unrolled.

    d = {"a": x * 2.0}             %mul = multiply(%x, 2.0)
    d["b"] = np.sin(d["a"])  ──▶   %sin = sin(%mul)
    return d["a"] + d["b"]         %add = add(%mul, %sin)
"""

from __future__ import annotations

import gast

from adcompiler.frontend.base import LoweringError, Static
from adcompiler.frontend.closures import new_list


class Containers:
    """The container half of `Lowering` (mixed into it)."""

    def expr_Dict(self, node):  # noqa: N802 - named after gast's node type
        out = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                raise LoweringError(node, "`**` in a dict literal is not supported")
            key = self.expr(k)
            if not isinstance(key, Static):
                raise LoweringError(k, "dict keys must be known when compiling (constants)")
            out[key.obj] = self.expr(v)
        return out

    def dict_get(self, d: dict, key, node):
        if not isinstance(key, Static):
            raise LoweringError(node, "a dict can only be indexed by a constant key")
        if key.obj not in d:
            raise LoweringError(node, f"the dict has no key {key.obj!r}")
        return d[key.obj]

    def dict_method(self, d: dict, name: str, args, node):
        if name == "items":
            return tuple((Static(k), v) for k, v in d.items())
        if name == "keys":
            return tuple(Static(k) for k in d)
        if name == "values":
            return tuple(d.values())
        if name == "get":
            key = args[0]
            if not isinstance(key, Static):
                raise LoweringError(node, "`.get` needs a constant key")
            return d.get(key.obj, args[1] if len(args) > 1 else Static(None))
        if name == "copy":
            return dict(d)
        raise LoweringError(node, f"the dict method `.{name}()` is not supported")

    def write_into_dict(self, name: str, d: dict, key, value, node) -> None:
        if not isinstance(key, Static):
            raise LoweringError(node, "dict keys must be known when compiling (constants)")
        self.rebind(d, {**d, key.obj: value}, node)

    # -- comprehensions, unrolled over sequences known when compiling -----------

    def expr_ListComp(self, node):  # noqa: N802
        if any(self.static_sequence_node(g.iter) is None for g in node.generators):
            return self.comprehension_loop(node)
        return new_list(self.comprehension(node, lambda: self.expr(node.elt)))

    expr_GeneratorExp = expr_ListComp  # noqa: N815 - sum(f(v) for v in x)

    def comprehension_loop(self, node):
        """A comprehension over an array's rows: the loop that appends to a new list."""
        name = f".comprehension{len(self.nodes)}"
        store, load = gast.Store(), gast.Load()

        def target(ctx):
            return gast.Name(name, ctx, None, None)

        append = gast.Expr(gast.Call(gast.Attribute(target(load), "append", load), [node.elt], []))
        body = append
        for gen in reversed(node.generators):
            for cond in reversed(gen.ifs):
                body = gast.If(cond, [body], [])
            body = gast.For(gen.target, gen.iter, [body], [], None)
        start = gast.Assign([target(store)], gast.List([], load), None)
        for stmt in (start, body):
            gast.copy_location(stmt, node)
            for child in gast.walk(stmt):
                if not hasattr(child, "lineno"):
                    gast.copy_location(child, node)
        self.lower_stmts([start, body])
        return self.env.pop(name)

    def static_sequence_node(self, node):
        """Like `static_sequence`, but without lowering anything: None if not known."""
        if isinstance(node, (gast.Tuple, gast.List)):
            return node.elts
        if isinstance(node, gast.Call) and isinstance(node.func, gast.Name):
            if node.func.id == "range":
                return node if all(isinstance(a, gast.Constant) for a in node.args) else None
            if node.func.id in ("zip", "enumerate"):
                parts = [self.static_sequence_node(a) for a in node.args]
                return None if any(p is None for p in parts) else node
        if isinstance(node, gast.Name):
            value = self.env.get(node.id)
            return node if isinstance(value, (tuple, dict)) else None
        if isinstance(node, gast.Call) and isinstance(node.func, gast.Attribute):
            if node.func.attr in ("items", "keys", "values"):
                return self.static_sequence_node(node.func.value)
        return None

    def expr_DictComp(self, node):  # noqa: N802
        pairs = self.comprehension(node, lambda: (self.expr(node.key), self.expr(node.value)))
        out = {}
        for key, value in pairs:
            if not isinstance(key, Static):
                raise LoweringError(node, "dict keys must be known when compiling")
            out[key.obj] = value
        return out

    def comprehension(self, node, element) -> list:
        """The elements of a comprehension whose sequences are known when compiling.
        Its variables are its own (they are unbound after it, as in Python 3); anything
        else it changes (a nested function called in it appending to a list) stays."""
        targets = {
            n.id
            for g in node.generators
            for n in gast.walk(g.target)
            if isinstance(n, gast.Name)
        }
        saved = {n: self.env[n] for n in targets if n in self.env}
        out: list = []

        def generate(generators):
            if not generators:
                out.append(element())
                return
            gen = generators[0]
            items = self.static_sequence(gen.iter)
            if items is None:
                raise LoweringError(
                    gen.iter,
                    "a comprehension over an array is not supported yet",
                    "use array operations, or a loop that fills a preallocated array",
                )
            for item in items:
                self.assign(gen.target, item)
                if all(self.truthy(self.expr(cond), cond) for cond in gen.ifs):
                    generate(generators[1:])

        try:
            generate(node.generators)
        finally:
            for n in targets:
                self.env.pop(n, None)
            self.env.update(saved)
        return out

    def truthy(self, value, node) -> bool:
        if isinstance(value, Static):
            return bool(value.obj)
        raise LoweringError(node, "a comprehension filter must be known when compiling")

    def static_sequence(self, node):
        """The elements of `node` if it is a sequence known when compiling, else None."""
        if isinstance(node, gast.Call) and isinstance(node.func, gast.Name):
            if node.func.id in ("zip", "enumerate"):
                parts = [self.static_sequence(a) for a in node.args]
                if any(p is None for p in parts):
                    return None
                if node.func.id == "zip":
                    return list(zip(*parts))
                return [(Static(i), v) for i, v in enumerate(parts[0])]
            if node.func.id == "range":
                bounds = [self.expr(a) for a in node.args]
                if all(isinstance(b, Static) for b in bounds):
                    return [Static(i) for i in range(*(b.obj for b in bounds))]
                return None
        value = self.expr(node)
        if isinstance(value, tuple):
            return list(value)
        if isinstance(value, dict):
            return [Static(k) for k in value]
        if isinstance(value, Static) and isinstance(value.obj, (list, tuple, range)):
            return [Static(v) for v in value.obj]
        return None
