"""Sample models that ``adcompiler train`` runs by name, with their small data sets.

    adcompiler train mlp_digits --epochs 5        # by name: this folder, also from a wheel
    python -m adcompiler.samples.mlp_digits       # the same, through the sample's __main__

They ship inside the package (data in ``data/``, a few hundred KiB), so an
installed adcompiler trains them without a checkout.
"""

import os

FOLDER = os.path.dirname(os.path.abspath(__file__))
NAMES = ("linear_regression", "logistic_regression", "mlp_digits", "rnn_sequence")


def path(name: str) -> str | None:
    """The file of sample ``name``, or None if there is no such sample."""
    return os.path.join(FOLDER, f"{name}.py") if name in NAMES else None
