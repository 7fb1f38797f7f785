"""adcompiler: source-to-source automatic differentiation for Python and NumPy.

import adcompiler as ad

dloss = ad.grad(loss, wrt=("w", "b"))      # a generated Python function
print(ad.source(dloss))                    # read it
ad.graph(loss, wrt="w").render("loss.svg") # see its dataflow graph
"""

from adcompiler.api import (
    grad,
    hessian,
    hvp,
    ir,
    jacobian,
    jvp,
    source,
    value_and_grad,
    vjp,
)
from adcompiler.check import check_grad
from adcompiler.custom import defrule, nondifferentiable, stop_gradient
from adcompiler.draw import graph
from adcompiler.errors import NonFiniteError, UnsupportedSyntaxError
from adcompiler.version import __version__ as __version__

__all__ = [
    "check_grad",
    "defrule",
    "grad",
    "graph",
    "hessian",
    "hvp",
    "ir",
    "jacobian",
    "jvp",
    "NonFiniteError",
    "nondifferentiable",
    "source",
    "stop_gradient",
    "value_and_grad",
    "vjp",
    "UnsupportedSyntaxError",
]
