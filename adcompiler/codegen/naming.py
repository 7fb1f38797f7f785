"""The one naming policy for generated code.

    primal value   the user's name:            z, and z_1 for a version that must coexist
    temporary      the operator's name:        matmul, tanh
    adjoint        the primal's name + _bar:   z_bar   (x̄ in the math)
    tangent        the primal's name + _dot:   z_dot   (ẋ in the math)

A name is reused once its previous holder is dead, so a user's ``h = f(h)``
stays ``h = f(h)``. Names of globals the generated code needs (``np``, the
run-time helpers, captured constants) are reserved and never given to a value.
"""

from __future__ import annotations

import builtins
import keyword

from adcompiler.ssa import Value

SUFFIX = {"adjoint": "_bar", "tangent": "_dot"}


def base_name(value: Value) -> str:
    hint = value.hint if value.hint.isidentifier() else "v"
    return hint + SUFFIX.get(value.role, "")


class Namer:
    """Gives every value a name, avoiding `reserved`, reusing names of dead values."""

    def __init__(self, reserved: set[str]):
        # builtins too: a value named `max` would make the `max(...)` that generated code
        # calls elsewhere in the function a local read before assignment
        self.reserved = set(reserved) | set(keyword.kwlist) | set(dir(builtins))
        self.holder: dict[str, int] = {}  # name -> id of the value that holds it
        self.name_of: dict[int, str] = {}
        self.dead: set[int] = set()

    def fix(self, value: Value, name: str) -> str:
        """Give `value` exactly `name` (a function parameter)."""
        self.holder[name] = value.id
        self.name_of[value.id] = name
        return name

    def share(self, value: Value, name: str) -> str:
        """Give `value` the name of the value that holds it (and goes on holding it)."""
        self.name_of[value.id] = name
        return name

    def name(self, value: Value) -> str:
        if value.id in self.name_of:
            return self.name_of[value.id]
        base = base_name(value)
        candidate, n = base, 0
        while not self._free(candidate):
            n += 1
            candidate = f"{base}_{n}"
        return self.fix(value, candidate)

    def kill(self, value_id: int) -> None:
        """`value_id` is read no more: its name may be given to a later value."""
        self.dead.add(value_id)

    def _free(self, name: str) -> bool:
        if name in self.reserved:
            return False
        holder = self.holder.get(name)
        return holder is None or holder in self.dead
