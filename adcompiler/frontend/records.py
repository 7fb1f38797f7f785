"""Arguments that hold arrays in attributes: NamedTuples, dataclasses, plain objects.

An argument whose structure (adcompiler.pytree.structure_of) is a record is tracked
while compiling, like a dict: each array attribute is a value of its own, read from
the argument at the start (the generated code receives the record's arrays as a dict,
``W = params["W"]``; adcompiler.pytree converts), and each attribute that is not an
array (an int, a string, a function) is a constant of the compiled code.

    params.W            the value read for W
    self.forward(x)     the class's method, inlined with `self` bound to the record
    self.scale          a property or a class constant: its getter inlined, or folded
"""

from __future__ import annotations

import types

from adcompiler.frontend.base import LoweringError, Static


class ObjectRecord:
    """A dataclass or object argument while compiling: its attributes, by name."""

    def __init__(self, cls: type, fields: dict):
        self.cls, self.fields = cls, fields


class NamedRecord(tuple):
    """A NamedTuple argument while compiling: a tuple (indexing and unpacking work) whose
    fields can also be read by name."""

    cls: type
    fields: dict

    @staticmethod
    def make(cls: type, fields: dict) -> NamedRecord:
        out = NamedRecord(fields.values())
        out.cls, out.fields = cls, fields
        return out


RECORDS = (ObjectRecord, NamedRecord)


class Records:
    """The record half of `Lowering` (mixed into it)."""

    def unpack_record(self, value, name: str, structure):
        """A record argument: one value per array attribute (``W = params["W"]``)."""
        kind, (cls, items) = structure
        fields = {}
        for key, sub in items:
            if sub is not None and sub[0] == "static":
                fields[key] = Static(sub[1][0])
                continue
            leaf = self.getitem(value, ((key,), True))
            leaf.hint, leaf.role = key, "primal"
            fields[key] = self.unpack_argument(leaf, key, sub)
        if kind == "namedtuple":
            return NamedRecord.make(cls, fields)
        return ObjectRecord(cls, fields)

    def record_attribute(self, record, attr: str, node):
        """``record.attr``: an attribute, a property (its getter inlined) or a constant of
        the class."""
        if isinstance(record, NamedRecord) and attr in record.fields:
            return record.fields[attr]
        _check_plain_lookup(record, attr, node)
        found = _class_attribute(record.cls, attr)
        if isinstance(found, property) and isinstance(found.fget, types.FunctionType):
            return self.call(found.fget, [record], {}, node)  # (it wins over __dict__)
        if attr in record.fields:
            return record.fields[attr]
        if isinstance(found, (int, float, str, bool, tuple, type(None))):
            return Static(found)
        what = type(record.cls).__name__ if found is _MISSING else type(found).__name__
        raise LoweringError(
            node,
            f"`.{attr}` of a {record.cls.__name__} argument is not supported "
            f"({'it has no such attribute' if found is _MISSING else f'a {what}'})",
            "read arrays, numbers and properties of the argument, or call its methods",
        )

    def record_method(self, record, attr: str, args, kwargs, node):
        """``record.method(...)``: the class's function, inlined with the record as self."""
        _check_plain_lookup(record, attr, node)
        found = _class_attribute(record.cls, attr)
        if attr in record.fields and not _is_data_descriptor(found):
            value = record.fields[attr]
            if isinstance(value, Static):  # a function held in an attribute: self.act(h)
                return self.call(value.obj, args, kwargs, node)
            raise LoweringError(
                node, f"calling the attribute `.{attr}` of a {record.cls.__name__} argument "
                "is not supported", "call a method of its class",
            )  # fmt: skip
        if isinstance(found, staticmethod):
            return self.call(found.__func__, args, kwargs, node)
        if isinstance(found, types.FunctionType):
            return self.call(found, [record, *args], kwargs, node)
        raise LoweringError(
            node,
            f"`.{attr}()` of a {record.cls.__name__} argument is not supported "
            f"({'no such method' if found is _MISSING else type(found).__name__})",
            "call a method defined in its class (a `def` taking self)",
        )


_MISSING = object()


def _is_data_descriptor(found) -> bool:
    return found is not _MISSING and (
        hasattr(type(found), "__set__") or hasattr(type(found), "__delete__")
    )


def _check_plain_lookup(record, attr: str, node) -> None:
    """Refuse what would make `record.attr` mean something else than its field: a class
    that customizes attribute access, or a descriptor (other than a property) of that
    name in the class."""
    cls = record.cls
    plain = (object.__getattribute__, tuple.__getattribute__)
    custom = cls.__getattribute__ not in plain
    found = _class_attribute(cls, attr)
    if isinstance(record, NamedRecord) and attr in record.fields:
        found = _MISSING  # the NamedTuple's own field accessor
    if custom or (_is_data_descriptor(found) and not isinstance(found, property)):
        why = "defines __getattribute__" if custom else f"has a {type(found).__name__} `{attr}`"
        raise LoweringError(
            node,
            f"`.{attr}` of a {cls.__name__} argument: the class {why}, so the attribute may "
            f"not be the value stored in the object",
            "pass the arrays in a dict, a NamedTuple or a dataclass",
        )


def _class_attribute(cls: type, attr: str):
    """What `cls.attr` finds (without calling descriptors), recorded as a fact that the
    generated code relies on (adcompiler.depends): a method, a property or a constant
    of the class changed later makes the gradient generate itself again."""
    from adcompiler import depends

    lookup = ClassLookup.of(cls, attr)
    found = lookup.cell_contents
    depends.record(depends.Fact(lookup, attr, (), found))
    return _MISSING if found is depends.MISSING else found


class ClassLookup:
    """What a class attribute resolves to, read as a closure cell's contents (so that a
    `depends.Fact` checks it on every call like a cell)."""

    _made: dict = {}

    def __init__(self, cls: type, attr: str):
        self.cls, self.attr = cls, attr

    @classmethod
    def of(cls, owner: type, attr: str) -> ClassLookup:
        key = (owner, attr)
        if key not in cls._made:
            cls._made[key] = ClassLookup(owner, attr)
        return cls._made[key]

    @property
    def cell_contents(self):
        from adcompiler import depends

        for klass in self.cls.__mro__:
            if self.attr in klass.__dict__:
                return klass.__dict__[self.attr]
        return depends.MISSING
