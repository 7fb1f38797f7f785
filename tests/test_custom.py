"""Custom rules and control of the gradient: defrule, stop_gradient, nondifferentiable."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import adcompiler as ad
from adcompiler.custom import CUSTOM_OPS, remove_rules
from tests.test_forward import check_jvp
from tests.test_higher import check_grad_of_grad, check_hvp

special = pytest.importorskip("scipy.special")
# scipy.special.ndtr (the normal CDF) has no built-in rule (expit has one: ops/scipy_special)
ndtr = special.ndtr
expit = special.expit  # built in: rules may call it
rng = np.random.default_rng(0)
SQRT_2PI = float(np.sqrt(2 * np.pi))


@pytest.fixture(autouse=True, scope="module")
def custom_rules():
    """Custom rules are global: made for this file's tests only, and removed after them."""
    ad.defrule(ndtr, derivative=lambda ans, x: np.exp(-0.5 * x * x) / SQRT_2PI)
    ad.defrule(
        hypot_scaled,
        adjoint=lambda g, ans, x, y, scale: (g * scale**2 * x / ans, g * scale**2 * y / ans),
        tangent=lambda ts, ans, x, y, scale: sum(
            t * scale**2 * v / ans for t, v in zip(ts, (x, y)) if t is not None
        ),
        elementwise=True,
    )
    ad.nondifferentiable(step)
    yield
    for op in list(CUSTOM_OPS):
        remove_rules(op.impl)


def logistic_loss(w, x, y):
    p = ndtr(x @ w)
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def logistic_args():
    return [rng.normal(size=3), rng.normal(size=(5, 3)), (rng.random(5) > 0.5) * 1.0]


def test_a_library_function_gets_its_derivative():
    args = logistic_args()
    ad.check_grad(logistic_loss, args)
    check_jvp(logistic_loss, args, ("w",))


def test_second_derivatives_compose_through_a_custom_rule():
    args = logistic_args()
    check_hvp(logistic_loss, args, ("w",))
    check_grad_of_grad(logistic_loss, args, ("w",))


def test_the_generated_code_calls_the_function_by_name():
    source = ad.source(ad.grad(logistic_loss))
    assert re.search(r"\bp = ndtr\(x @ w\)", source)
    assert "np.exp(-0.5 * matmul_x * matmul_x) / 2.50662827" in source  # the rule, as it reads


def hypot_scaled(x, y, scale=1.0):
    return scale * np.sqrt(x * x + y * y)


def uses_hypot(x, y):
    return np.sum(hypot_scaled(x, y, scale=2.0) * np.arange(1.0, 4.0))


def test_adjoint_and_tangent_of_a_function_of_two_arrays_with_a_static_argument():
    x, y = rng.normal(size=3), rng.normal(size=(2, 3))  # broadcasting inputs
    ad.check_grad(uses_hypot, [x, y], wrt=("x", "y"))
    check_jvp(uses_hypot, [x, y], ("x", "y"))
    assert "hypot_scaled(x, y, scale=2.0)" in ad.source(ad.grad(uses_hypot, wrt=("x", "y")))


def test_decorator_form_and_a_missing_tangent_rule():
    @ad.defrule(adjoint=lambda g, ans, x: g * (1 - ans * ans))
    def my_tanh(x):
        return np.tanh(x)

    def uses_my_tanh(x):
        return np.sum(my_tanh(x) ** 2)

    @ad.nondifferentiable(name="hard_sign")
    def sign_of(x):
        return np.sign(x)

    def uses_sign(x):
        return np.sum(sign_of(x) * x)

    x = rng.normal(size=4)
    np.testing.assert_allclose(ad.grad(uses_sign)(x), np.sign(x))
    assert "hard_sign(x)" in ad.source(ad.grad(uses_sign))
    ad.check_grad(uses_my_tanh, [x])
    assert my_tanh(0.5) == np.tanh(0.5)  # the function itself is unchanged
    with pytest.raises(NotImplementedError, match="no tangent rule for my_tanh"):
        ad.jvp(uses_my_tanh)


def test_rules_can_use_numpy_functions_on_symbolic_values():
    def softplus(x):
        return np.log1p(np.exp(x))

    ad.defrule(softplus, derivative=lambda ans, x: expit(x))

    def f(x):
        return np.sum(softplus(x) * np.exp(-softplus(x)))

    x = rng.normal(size=4)
    ad.check_grad(f, [x])
    check_jvp(f, [x], ("x",))
    check_hvp(f, [x], ("x",))


def test_stop_gradient():
    def f(x):
        return np.sum(x * ad.stop_gradient(x))

    x = np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(ad.grad(f)(x), x)
    np.testing.assert_allclose(ad.jvp(f)(x, np.ones(3))[1], np.sum(x))
    np.testing.assert_allclose(ad.hvp(f)(x, np.ones(3)), np.zeros(3))
    assert "stop_gradient(x)" in ad.source(ad.grad(f))


def step(x):  # declared non-differentiable by the fixture above
    return (x > 0).astype(float)


def test_nondifferentiable_function_is_called_and_blocks_the_derivative():
    def f(x):
        return np.sum(step(x) * x * x)

    x = np.array([-1.0, 2.0, 0.5])
    np.testing.assert_allclose(ad.grad(f)(x), 2 * x * (x > 0))
    np.testing.assert_allclose(ad.jvp(f)(x, np.ones(3))[1], np.sum(2 * x * (x > 0)))
    assert "step(x)" in ad.source(ad.grad(f))


def test_misuse_is_reported():
    with pytest.raises(ValueError, match="built-in rules"):
        ad.defrule(np.exp, derivative=lambda ans, x: ans)
    with pytest.raises(TypeError, match="one array"):
        ad.defrule(_two_args, derivative=lambda ans, x, y: ans)
    with pytest.raises(TypeError, match="needs"):
        ad.defrule(_two_args)


def _two_args(x, y):
    return x + y


def test_names_do_not_collide_with_user_variables():
    def f(x):
        ndtr_x = 2.0 * x
        p = ndtr(ndtr_x)
        return np.sum(p * p)

    x = rng.normal(size=3)
    ad.check_grad(f, [x])
    check_jvp(f, [x], ("x",))


def test_cli_file_imports_the_library_function(tmp_path):
    model = tmp_path / "model.py"
    model.write_text(
        textwrap.dedent(
            """
            import numpy as np
            from scipy.special import ndtr

            import adcompiler as ad

            ad.defrule(ndtr, derivative=lambda ans, x: np.exp(-0.5 * x * x) / 2.5066282746310002)


            def loss(w, x):
                return np.sum(ndtr(x @ w))
            """
        )
    )
    out = tmp_path / "loss_grad.py"
    result = subprocess.run(
        [sys.executable, "-m", "adcompiler", "grad", f"{model}:loss", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "from scipy.special import ndtr" in out.read_text()
    script = (
        "import sys\n"
        "sys.modules['adcompiler'] = None\n"
        "import numpy as np\n"
        "from loss_grad import loss_grad\n"
        "w, x = np.array([0.5, -1.0]), np.array([[1.0, 2.0], [3.0, -1.0]])\n"
        "print(repr(loss_grad(w, x).tolist()))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    w, x = np.array([0.5, -1.0]), np.array([[1.0, 2.0], [3.0, -1.0]])
    z = x @ w
    np.testing.assert_allclose(
        eval(run.stdout), x.T @ (np.exp(-0.5 * z * z) / SQRT_2PI), rtol=1e-12
    )
