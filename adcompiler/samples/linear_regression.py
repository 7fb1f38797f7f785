"""Linear regression on the diabetes data set (442 patients, 10 features, disease progression).

    python -m adcompiler.samples.linear_regression
    adcompiler train linear_regression --epochs 20 --seed 1  # with options

Features and target are standardized with the training split's statistics;
the model is ``x @ w + b`` with a mean-squared-error loss. Prints the test
R^2, the test RMSE in the target's own units, and for reference the R^2 of
the exact least-squares solution on the same split.
Data: adcompiler/samples/data/diabetes.npz (see docs/training.md).
"""

import os
import sys

import numpy as np

from adcompiler.train import split
from adcompiler.train.losses import mean_squared_error
from adcompiler.train.metrics import r2_score

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "diabetes.npz")

defaults = {"epochs": 60, "batch_size": 32, "lr": 0.01, "optimizer": "sgd"}


def loss(w, b, x, y):
    """Mean squared error of the linear model."""
    return mean_squared_error(x @ w + b, y)


def r2(w, b, x, y):
    """Coefficient of determination on standardized targets."""
    return r2_score(x @ w + b, y)


metric = r2


def init_params(seed):
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(0.0, 0.01, size=10), "b": np.zeros(())}


def load_data():
    with np.load(DATA, allow_pickle=False) as archive:
        x, y = archive["features"], archive["target"]
    train, validation, test = split((x, y), (0.7, 0.15, 0.15), seed=0)
    x_mean, x_std = train[0].mean(axis=0), train[0].std(axis=0)
    y_mean, y_std = train[1].mean(), train[1].std()

    def standardize(part):
        return (part[0] - x_mean) / x_std, (part[1] - y_mean) / y_std

    return {
        "train": standardize(train),
        "validation": standardize(validation),
        "test": standardize(test),
        "target_scale": y_std,
    }


def report(params, data):
    """The test RMSE in the target's own units (printed by the CLI after training)."""
    x_test, y_test = data["test"]
    rmse = np.sqrt(loss(params["w"], params["b"], x_test, y_test)) * data["target_scale"]
    x_train, y_train = data["train"]
    design = np.column_stack([x_train, np.ones(len(x_train))])
    exact = np.linalg.lstsq(design, y_train, rcond=None)[0]
    best = r2_score(x_test @ exact[:-1] + exact[-1], y_test)
    return f"test RMSE: {rmse:.1f} (disease-progression units); exact least squares: R^2 {best:.4f}"


if __name__ == "__main__":
    from adcompiler.train.cli import run_module

    sys.exit(run_module(sys.modules[__name__], sys.argv[1:]))
