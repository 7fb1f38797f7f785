"""The samples train on adcompiler's generated gradients and reach their stated results."""

import os
import subprocess
import sys

import numpy as np
import pytest

from adcompiler.train import evaluate, fit
from adcompiler.train.objective import Objective
from adcompiler.train.optimizers import make_optimizer

try:
    from test_train_helpers import ROOT, SAMPLES, load_sample, needs_compiler, subprocess_env
except ImportError:  # collected as part of a package
    from tests.test_train_helpers import (
        ROOT,
        SAMPLES,
        load_sample,
        needs_compiler,
        subprocess_env,
    )

pytestmark = needs_compiler


def train_sample(name, **overrides):
    sample = load_sample(name)
    settings = dict(sample.defaults, **overrides)
    data = sample.load_data()
    result = fit(
        sample.loss, sample.init_params(0), data["train"], epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        optimizer=make_optimizer(settings["optimizer"], settings["lr"]),
        validation=data["validation"], metric=getattr(sample, "metric", None), quiet=True,
        blas_threads=1,
    )  # fmt: skip
    scores = evaluate(Objective(sample.loss, result.params), result.params, data["test"],
                      getattr(sample, "metric", None))  # fmt: skip
    return sample, data, result, scores


def test_mlp_digits_reaches_95_percent():
    _, _, result, scores = train_sample("mlp_digits")
    assert scores["accuracy"] >= 0.95
    assert result.history["val_accuracy"][-1] >= 0.95


def test_logistic_regression_separates_threes_from_eights():
    _, _, _, scores = train_sample("logistic_regression")
    assert scores["accuracy"] >= 0.95


def test_linear_regression_approaches_least_squares():
    _, data, result, scores = train_sample("linear_regression")
    x, y = data["train"]
    design = np.column_stack([x, np.ones(len(x))])
    exact = np.linalg.lstsq(design, y, rcond=None)[0]
    x_test, y_test = data["test"]
    best = 1 - np.sum((x_test @ exact[:-1] + exact[-1] - y_test) ** 2) / np.sum(
        (y_test - y_test.mean()) ** 2
    )
    assert scores["r2"] == pytest.approx(best, abs=0.03)
    # s1..s6 are strongly correlated, so SGD need not find the same weights, but its
    # training error must be close to the least-squares minimum.
    sample = load_sample("linear_regression")
    trained = sample.loss(result.params["w"], result.params["b"], x, y)
    assert trained <= 1.02 * sample.loss(exact[:-1], exact[-1], x, y)


def test_samples_do_not_need_scikit_learn():
    # The samples read adcompiler/samples/data/*.npz with numpy; block sklearn and import each one.
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "import importlib.util\n"
        "for name in ('linear_regression', 'logistic_regression', 'mlp_digits',"
        " 'rnn_sequence'):\n"
        f"    spec = importlib.util.spec_from_file_location(name, {SAMPLES!r} + f'/{{name}}.py')\n"
        "    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "    module.load_data()\n"
    )
    subprocess.run([sys.executable, "-c", code], env=subprocess_env(), cwd=ROOT, check=True)


def test_sample_script_prints_its_result():
    completed = subprocess.run(
        [sys.executable, os.path.join(SAMPLES, "logistic_regression.py"), "--quiet"],
        env=subprocess_env(), cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "test accuracy:" in completed.stdout


def test_rnn_sequence_beats_predicting_zero():
    import adcompiler

    sample = load_sample("rnn_sequence")
    params = sample.init_params(0)
    try:
        adcompiler.value_and_grad(sample.loss, wrt=tuple(params))
    except adcompiler.UnsupportedSyntaxError as error:
        pytest.skip(f"the RNN needs loop support in the compiler: {str(error).splitlines()[1]}")
    _, data, _, scores = train_sample("rnn_sequence", epochs=5)
    assert scores["loss"] < 0.1 * np.mean(data["test"][1] ** 2)
