"""The API a JAX or autograd user reaches for (issue 16): parameters as any pytree
(NamedTuples, dataclasses, objects holding arrays, methods), has_aux, lambdas,
functools.partial, one vjp cotangent shaped like the output, pickling generated
functions, check_grad and ir for every wrt. Every derivative is checked against float64
central differences, on the first call and on later (specialized) calls."""

import dataclasses
import functools
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from typing import NamedTuple

import numpy as np
import pytest

import adcompiler as ad
from adcompiler import pytree
from adcompiler.check import numerical_grad
from adcompiler.errors import DifferentiationTypeError, SourceUnavailableError, WrtError

rng = np.random.default_rng(16)
EPS = 1e-6


# -- what the tests differentiate ----------------------------------------------------


class Params(NamedTuple):
    W: np.ndarray
    b: np.ndarray


class Nested(NamedTuple):
    layers: list  # of Params
    scale: float
    depth: int  # not differentiable: a constant of the compiled code


def loss(params, x, y):
    pred = x @ params.W + params.b
    return np.mean((pred - y) ** 2)


def loss_aux(params, x, y):
    pred = x @ params.W + params.b
    return np.mean((pred - y) ** 2), pred


def loss_aux_tuple(params, x, y):
    pred = x @ params.W + params.b
    err = pred - y
    return np.mean(err**2), (np.max(np.abs(err)), pred)


def loss_nested(params, x):
    h = x
    for layer in params.layers:
        h = np.tanh(h @ layer.W + layer.b)
    for _ in range(params.depth):
        h = h * params.scale
    return np.sum(h**2)


def loss_unpacking(params, x):
    W, b = params  # a NamedTuple is a tuple
    return np.sum(np.sin(x @ W + params[1] * b))


@dataclasses.dataclass
class Linear:
    W: np.ndarray
    b: np.ndarray
    activation: str = "tanh"

    def forward(self, x):
        h = x @ self.W + self.b
        if self.activation == "tanh":
            return np.tanh(h)
        return h

    @property
    def weight_norm(self):
        return np.sum(self.W**2)

    def loss(self, x, y):
        return np.mean((self.forward(x) - y) ** 2) + 0.01 * self.weight_norm


@dataclasses.dataclass(frozen=True)
class Frozen:
    W: np.ndarray
    steps: int

    def loss(self, x):
        h = x
        for _ in range(self.steps):
            h = np.tanh(h @ self.W)
        return np.sum(h)


class Model:
    """A plain class: arrays in attributes, layers in a list."""

    scale = 0.5  # a class constant

    def __init__(self, sizes):
        self.layers = [
            Linear(rng.normal(size=(m, n)), rng.normal(size=n)) for m, n in zip(sizes, sizes[1:])
        ]
        self.name = "mlp"

    def predict(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x * self.scale

    def loss(self, x, y):
        return np.mean((self.predict(x) - y) ** 2)


def uses_model(model, x):
    return np.sum(model.predict(x) ** 2)


def two_outputs(w, x):
    pred = np.tanh(x @ w)
    return np.mean(pred**2), pred


def plain(w, x):
    return np.sum(np.sin(w * x))


# -- helpers -------------------------------------------------------------------------


def fd(f, args, index):
    """Central differences of scalar f with respect to args[index], a pytree: the same
    structure and types."""
    tree = args[index]
    if pytree.structure_of(tree) is None:
        return numerical_grad(f, list(args), index, EPS)
    n = len(pytree.leaves(tree))
    out = []
    for k, leaf in enumerate(pytree.leaves(tree)):

        def at(x, k=k):
            counter = iter(range(n))
            new = pytree.map_leaves(tree, lambda v: x if next(counter) == k else v)
            return f(*args[:index], new, *args[index + 1 :])

        out.append(numerical_grad(at, [leaf], 0, EPS))
    counter = iter(out)
    return pytree.map_leaves(tree, lambda v: next(counter))


def assert_tree_close(got, expected, rtol=1e-5, atol=1e-7):
    assert type(got) is type(expected)
    assert pytree.structure_of(got) == pytree.structure_of(expected)
    for g, e in zip(pytree.leaves(got), pytree.leaves(expected)):
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol)


def params(m=3, n=2):
    return Params(rng.normal(size=(m, n)), rng.normal(size=n))


def data(k=5, m=3, n=2):
    return rng.normal(size=(k, m)), rng.normal(size=(k, n))


# -- parameters as pytrees ---------------------------------------------------------------


def test_namedtuple_params_grad_and_value_and_grad():
    p, (x, y) = params(), data()
    expected = fd(loss, (p, x, y), 0)
    for _ in range(3):  # the first call, then the specialized version
        g = ad.grad(loss)(p, x, y)
        assert isinstance(g, Params)
        assert_tree_close(g, expected)
        value, g = ad.value_and_grad(loss)(p, x, y)
        assert value == pytest.approx(loss(p, x, y))
        assert_tree_close(g, expected)


def test_namedtuple_unpacked_and_indexed_as_a_tuple():
    p, (x, _) = params(3, 3), data(n=3)
    for _ in range(3):
        assert_tree_close(ad.grad(loss_unpacking)(p, x), fd(loss_unpacking, (p, x), 0))


def test_nested_records_with_constants():
    layers = [params(3, 4), params(4, 2)]
    p = Nested(layers, 0.7, 2)
    x, _ = data()
    expected = fd(loss_nested, (p, x), 0)
    for _ in range(3):
        g = ad.grad(loss_nested)(p, x)
        assert isinstance(g, Nested) and isinstance(g.layers[1], Params)
        assert g.depth == 2  # a constant: the argument's own
        assert_tree_close(g, expected)
    g3 = ad.grad(loss_nested)(p._replace(depth=3), x)  # another constant: generated again
    assert_tree_close(g3, fd(loss_nested, (p._replace(depth=3), x), 0))


def test_dataclass_method_with_respect_to_self_and_to_its_input():
    layer = Linear(rng.normal(size=(3, 2)), rng.normal(size=2))
    x, y = data()
    expected_self = fd(Linear.loss, (layer, x, y), 0)
    expected_x = fd(Linear.loss, (layer, x, y), 1)
    for _ in range(3):
        g = ad.grad(layer.loss, wrt="self")(x, y)
        assert isinstance(g, Linear) and g.activation == "tanh"
        assert_tree_close(g, expected_self)
        np.testing.assert_allclose(ad.grad(layer.loss)(x, y), expected_x, rtol=1e-5, atol=1e-7)
        (value, (gs, gx)) = ad.value_and_grad(layer.loss, wrt=("self", 0))(x, y)
        assert value == pytest.approx(layer.loss(x, y))
        assert_tree_close(gs, expected_self)
    linear = Linear(layer.W, layer.b, "linear")  # another constant: another version
    assert_tree_close(ad.grad(linear.loss, wrt="self")(x, y), fd(Linear.loss, (linear, x, y), 0))


def test_frozen_dataclass_and_plain_object():
    f = Frozen(rng.normal(size=(3, 3)), 2)
    x, y = data(n=3)
    for _ in range(3):
        g = ad.grad(Frozen.loss, wrt="self")(f, x)
        assert isinstance(g, Frozen) and g.steps == 2
        assert_tree_close(g, fd(Frozen.loss, (f, x), 0))
    model = Model([3, 4, 3])
    for _ in range(3):
        g = ad.grad(model.loss, wrt="self")(x, y)
        assert isinstance(g, Model) and g.name == "mlp" and isinstance(g.layers[0], Linear)
        assert_tree_close(g, fd(Model.loss, (model, x, y), 0))
        # a record that is not differentiated: its arrays are read, its methods inlined
        np.testing.assert_allclose(
            ad.grad(uses_model, wrt="x")(model, x), fd(uses_model, (model, x), 1), rtol=1e-5
        )
    ad.check_grad(Model.loss, (model, x, y), wrt=("self", "x"))


def test_jvp_and_hvp_with_namedtuple_params():
    p, (x, _) = params(3, 3), data(n=3)
    t = params(3, 3)

    def single(q, x):
        h = np.tanh(x @ q.W + q.b)
        return np.sum(h**2)

    def moved(s):
        return Params(p.W + s * t.W, p.b + s * t.b)

    expected = (single(moved(EPS), x) - single(moved(-EPS), x)) / (2 * EPS)
    g = ad.grad(single)
    up, down = g(moved(EPS), x), g(moved(-EPS), x)
    hv_expected = Params((up.W - down.W) / (2 * EPS), (up.b - down.b) / (2 * EPS))
    for _ in range(3):
        value, d = ad.jvp(single)(p, x, t)
        assert value == pytest.approx(single(p, x))
        assert d == pytest.approx(expected, rel=1e-6)
        hv = ad.hvp(single)(p, x, t)
        assert isinstance(hv, Params)
        assert_tree_close(hv, hv_expected, rtol=1e-5, atol=1e-6)


def test_record_errors_are_located_and_say_what_is_wrong():
    def bad(params, x):
        return np.sum(x @ params.missing)

    with pytest.raises(ad.UnsupportedSyntaxError, match="no such attribute"):
        ad.grad(bad)(params(), data()[0])

    def indexed(layer, x):
        return np.sum(x @ layer["W"])

    with pytest.raises(ad.UnsupportedSyntaxError, match="Linear argument cannot be indexed"):
        ad.grad(indexed)(Linear(np.ones((3, 2)), np.ones(2)), data()[0])


# -- has_aux ---------------------------------------------------------------------------


def test_has_aux_follows_jax_conventions():
    p, (x, y) = params(), data()
    expected = fd(loss, (p, x, y), 0)
    for _ in range(3):
        g, aux = ad.grad(loss_aux, has_aux=True)(p, x, y)
        assert_tree_close(g, expected)
        np.testing.assert_allclose(aux, x @ p.W + p.b)
        (value, aux), g = ad.value_and_grad(loss_aux, has_aux=True)(p, x, y)
        assert value == pytest.approx(loss(p, x, y))
        assert_tree_close(g, expected)
        (value, (worst, pred)), (gp, gx) = ad.value_and_grad(
            loss_aux_tuple, wrt=("params", "x"), has_aux=True
        )(p, x, y)
        assert worst == pytest.approx(np.max(np.abs(x @ p.W + p.b - y)))
        assert_tree_close(gp, expected)
        np.testing.assert_allclose(gx, fd(loss, (p, x, y), 1), rtol=1e-5, atol=1e-7)


def test_has_aux_with_array_arguments_and_as_a_decorator():
    w, x = rng.normal(size=(3, 2)), rng.normal(size=(4, 3))

    @ad.grad(wrt="w", has_aux=True)
    def dloss(w, x):
        return two_outputs(w, x)

    for _ in range(3):
        g, pred = ad.grad(two_outputs, has_aux=True)(w, x)
        expected = numerical_grad(lambda w: two_outputs(w, x)[0], [w], 0, EPS)
        np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(pred, np.tanh(x @ w))
        np.testing.assert_allclose(dloss(w, x)[0], expected, rtol=1e-5, atol=1e-8)


def test_has_aux_refuses_what_is_not_a_pair():
    with pytest.raises(DifferentiationTypeError, match="has_aux=True needs plain to return a pair"):
        ad.grad(plain, has_aux=True)
    with pytest.raises(DifferentiationTypeError, match="has_aux=True for `return loss, aux`"):
        ad.grad(two_outputs)


# -- lambdas and functools.partial ------------------------------------------------------


def test_lambda_is_read_from_its_line():
    x = rng.normal(size=4)
    g = ad.grad(lambda w: np.sum(np.sin(w) ** 2))
    scale = 3.0
    h = ad.value_and_grad(lambda w, x: scale * np.sum(w * x), wrt="w")
    for _ in range(3):
        np.testing.assert_allclose(g(x), np.sin(2 * x), rtol=1e-12)
        value, gw = h(x, x + 1.0)
        np.testing.assert_allclose(gw, 3.0 * (x + 1.0))
    assert "def lambda_grad(w):" in ad.source(g)


def test_two_lambdas_on_one_line_are_refused():
    fs = [lambda w: np.sum(w), lambda w: np.sum(w**2)]  # noqa: E731 - the point of the test
    with pytest.raises(SourceUnavailableError, match="2 lambdas taking \\(w\\)"):
        ad.grad(fs[1])
    fs = [lambda w: np.sum(w), lambda v: np.sum(v**2)]  # other parameters: told apart
    np.testing.assert_allclose(ad.grad(fs[1])(np.ones(2)), 2 * np.ones(2))


def test_partial_binds_arguments():
    p, (x, y) = params(), data()
    expected = fd(loss, (p, x, y), 0)
    by_keyword = ad.grad(functools.partial(loss, x=x, y=y))
    by_position = ad.value_and_grad(functools.partial(plain, p.b))  # wrt: the first left
    for _ in range(3):
        assert_tree_close(by_keyword(p), expected)
        v, gx = by_position(p.b * 2)
        np.testing.assert_allclose(gx, p.b * np.cos(p.b * p.b * 2), rtol=1e-12)
    gw = ad.grad(functools.partial(plain, p.b), wrt="w")(p.b * 2)  # a bound one, by name
    np.testing.assert_allclose(gw, p.b * 2 * np.cos(p.b * p.b * 2), rtol=1e-12)
    vjp = ad.vjp(functools.partial(two_outputs, x=x[:, :3]))
    w = rng.normal(size=(3, 2))
    (_, pred), gw = vjp(w, (1.0, np.zeros((5, 2))))
    np.testing.assert_allclose(
        gw, numerical_grad(lambda w: two_outputs(w, x[:, :3])[0], [w], 0, EPS), rtol=1e-5
    )


def test_partial_errors_do_not_print_the_bound_arrays():
    big = np.zeros(10_000)
    with pytest.raises(WrtError, match="takes 0 more") as err:
        ad.grad(functools.partial(plain, big, big), wrt=0)
    assert "0., 0." not in str(err.value)
    with pytest.raises(SourceUnavailableError, match="partial binds 'dot'") as err:
        ad.grad(functools.partial(np.dot, big))
    assert "0., 0." not in str(err.value)


# -- vjp: one cotangent ---------------------------------------------------------------------


def test_vjp_takes_one_cotangent_shaped_like_the_output():
    w, x = rng.normal(size=(3, 2)), rng.normal(size=(4, 3))
    f = ad.vjp(two_outputs)
    c = (0.7, rng.normal(size=(4, 2)))

    def dot(w):
        loss_value, pred = two_outputs(w, x)
        return c[0] * loss_value + np.sum(c[1] * pred)

    for _ in range(3):
        (value, pred), gw = f(w, x, c)
        np.testing.assert_allclose(gw, numerical_grad(dot, [w], 0, EPS), rtol=1e-5, atol=1e-8)
    assert "cotangent" in ad.source(f).split("\n")[0]


# -- pickling ------------------------------------------------------------------------------


def _run(g, *args):
    return g(*args)


def test_generated_functions_pickle_by_reference():
    x, y = data()
    for g in (
        ad.grad(loss),
        ad.grad(plain),
        ad.grad(loss_aux, has_aux=True),
        ad.jvp(plain),
        ad.grad(ad.grad(plain)),
        ad.grad(functools.partial(loss, x=x, y=y)),
    ):
        again = pickle.loads(pickle.dumps(g))
        assert again is g or type(again) is type(g)
    assert pickle.loads(pickle.dumps(ad.grad(loss))) is ad.grad(loss)  # the cached one


def _train_step(step, params, x, y, lr):
    """What a worker process runs: a step with a gradient it received pickled."""
    (value, pred), g = step(params, x, y)
    return value, Params(params.W - lr * g.W, params.b - lr * g.b)


def test_a_jax_users_first_hour():
    """NamedTuple params, has_aux, a lambda, a partial, a gradient pickled to a spawn
    process pool, check_grad with a dict of params: the session of issue 16."""
    p, (x, y) = params(), data()
    step = ad.value_and_grad(loss_aux, has_aux=True)
    values = []
    for _ in range(20):  # a few steps of gradient descent
        (value, pred), g = step(p, x, y)
        values.append(value)
        p = Params(p.W - 0.05 * g.W, p.b - 0.05 * g.b)
    assert values[-1] < values[0]
    assert_tree_close(step(p, x, y)[1], fd(loss, (p, x, y), 0))
    l2 = ad.grad(lambda w: 0.5 * np.sum(w**2))
    np.testing.assert_allclose(l2(p.W), p.W)
    on_batch = ad.grad(functools.partial(loss, x=x, y=y))
    assert_tree_close(on_batch(p), fd(loss, (p, x, y), 0))
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        value, there = pool.submit(_train_step, step, p, x, y, 0.05).result()
        there_bound = pool.submit(_run, on_batch, p).result()
    assert value == pytest.approx(loss(p, x, y))
    assert isinstance(there, Params) and isinstance(there_bound, Params)
    here = step(p, x, y)[1]
    np.testing.assert_allclose(there.W, p.W - 0.05 * here.W, rtol=1e-12)
    assert_tree_close(there_bound, on_batch(p), rtol=1e-12, atol=0)
    q = {"W1": rng.normal(size=(3, 4)), "b": rng.normal(size=4), "W2": rng.normal(size=(4, 2))}
    ad.check_grad(dict_loss, (q, x, y), wrt="params")


# -- check_grad and ir for every wrt -------------------------------------------------------


def dict_loss(params, x, y):
    h = np.tanh(x @ params["W1"] + params["b"])
    return np.mean((h @ params["W2"] - y) ** 2)


def test_check_grad_with_a_dict_a_namedtuple_and_an_object():
    p = {"W1": rng.normal(size=(3, 4)), "b": rng.normal(size=4), "W2": rng.normal(size=(4, 2))}
    x, y = data()
    ad.check_grad(dict_loss, (p, x, y), wrt="params")
    ad.check_grad(dict_loss, (p, x, y), wrt=("params", "x"))
    ad.check_grad(loss, (params(), x, y), wrt="params")
    ad.check_grad(Linear.loss, (Linear(rng.normal(size=(3, 2)), np.ones(2)), x, y))


def test_check_grad_catches_a_wrong_tree_gradient(monkeypatch):
    p, (x, y) = params(), data()

    def wrong(f, wrt=None):
        return lambda *args: Params(np.zeros_like(p.W), np.zeros_like(p.b))

    monkeypatch.setattr(ad.api, "grad", wrong)
    with pytest.raises(AssertionError, match="leaf 0"):
        ad.check_grad(loss, (p, x, y), wrt="params")


def test_ir_and_source_of_structured_gradients():
    p = {"W1": rng.normal(size=(3, 4)), "b": rng.normal(size=4), "W2": rng.normal(size=(4, 2))}
    x, y = data()
    g = ad.grad(dict_loss, wrt="params")
    g(p, x, y)
    text = ad.ir(g)
    assert "getitem(%params) {index=(('W1',), True)}" in text
    assert "return {'W1': W1_bar" in ad.source(g).replace('"', "'")

    def record_loss(q, x):
        return np.sum(x @ q.W)

    h = ad.grad(record_loss)
    with pytest.raises(TypeError, match="call it once"):
        ad.ir(h)
    h(params(), x)
    assert "%W = getitem(%q)" in ad.ir(h)


class Shadowed:
    """A property of the same name as an attribute in __dict__: the property wins."""

    def __init__(self, W):
        self._W = W
        self.__dict__["W"] = np.zeros_like(W)  # not what `obj.W` reads
        self.act = np.tanh  # a function held in an attribute: a constant

    @property
    def W(self):
        return 2.0 * self._W


class Custom:
    def __init__(self, W):
        self.W = W

    def __getattribute__(self, name):
        return object.__getattribute__(self, name)


def shadowed_loss(obj, x):
    return np.sum(obj.act(x @ obj.W))


def test_attribute_lookup_follows_python():
    x = rng.normal(size=(4, 3))
    obj = Shadowed(rng.normal(size=(3, 2)))
    for _ in range(3):
        g = ad.grad(shadowed_loss)(obj, x)
        assert isinstance(g, Shadowed) and g.act is np.tanh
        assert_tree_close(g, fd(shadowed_loss, (obj, x), 0))
        assert np.all(g.__dict__["W"] == 0.0) and np.any(g._W != 0.0)
    with pytest.raises(ad.UnsupportedSyntaxError, match="defines __getattribute__"):
        ad.grad(shadowed_loss)(Custom(np.ones((3, 2))), x)


def loss_metrics(w, x):
    pred = np.tanh(x @ w)
    return np.sum(pred**2), {"pred": pred, "steps": 3, "parts": (pred[0], np.max(pred))}


def test_has_aux_returns_a_dict_of_metrics():
    w, x = rng.normal(size=(3, 2)), rng.normal(size=(4, 3))
    expected = numerical_grad(lambda w: loss_metrics(w, x)[0], [w], 0, EPS)
    for _ in range(3):
        g, metrics = ad.grad(loss_metrics, has_aux=True)(w, x)
        np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-8)
        assert metrics["steps"] == 3 and set(metrics) == {"pred", "steps", "parts"}
        np.testing.assert_allclose(metrics["parts"][0], np.tanh(x @ w)[0])
        (value, metrics), g = ad.value_and_grad(loss_metrics, has_aux=True)(w, x)
        assert value == pytest.approx(loss_metrics(w, x)[0])
        np.testing.assert_allclose(metrics["pred"], np.tanh(x @ w))
    with pytest.raises(DifferentiationTypeError, match="only the aux output of has_aux"):
        ad.vjp(loss_metrics)
    with pytest.raises(DifferentiationTypeError, match="only the aux output of has_aux"):
        ad.jvp(loss_metrics)


def test_transforms_of_a_partial_compose():
    """hvp of a partial, and vjp of the gradient of a partial (grad of grad), against
    central differences of the gradient."""
    x, w, v = np.linspace(0.1, 1.0, 3), np.linspace(-1.0, 2.0, 3), np.array([0.3, -1.0, 2.0])
    g = ad.grad(functools.partial(plain, x=x))
    expected = (g(w + EPS * v) - g(w - EPS * v)) / (2 * EPS)
    for _ in range(3):
        np.testing.assert_allclose(ad.hvp(functools.partial(plain, x=x))(w, v), expected, 1e-6)
        np.testing.assert_allclose(ad.vjp(g)(w, v)[1], expected, rtol=1e-6)


def test_ir_of_a_record_gradient_from_example_arguments():
    def record_loss(q, x):
        return np.sum(x @ q.W + q.b)

    p, (x, _) = params(), data()
    text = ad.ir(ad.grad(record_loss), p, x)  # nothing runs
    assert "%W = getitem(%q)" in text and "%b = getitem(%q)" in text
    layer = Linear(p.W, p.b)
    assert "%W = getitem(%self)" in ad.ir(ad.grad(layer.loss, wrt="self"), x, x[:, :2])


def test_check_grad_of_a_method_and_a_partial():
    layer = Linear(rng.normal(size=(3, 2)), rng.normal(size=2))
    x, y = data()
    ad.check_grad(layer.loss, (x, y), wrt="self")
    ad.check_grad(layer.loss, (x, y), wrt=("self", 0))
    ad.check_grad(functools.partial(loss, x=x, y=y), (params(),))
    ad.check_grad(functools.partial(loss, params()), (x, y), wrt=1)


def _predict(params, x):
    return np.tanh(x @ params.W + params.b)


def passes_params_on(params, x, y):
    return np.mean((_predict(params, x) - y) ** 2)


def test_record_passed_on_to_a_helper():
    p, (x, y) = params(), data()
    for _ in range(3):
        g = ad.grad(passes_params_on)(p, x, y)
        assert isinstance(g, Params)
        assert_tree_close(g, fd(passes_params_on, (p, x, y), 0))


class Scaled:
    factor = 2.0

    def __init__(self, W):
        self.W = W

    def apply(self, x):
        return x @ self.W * self.factor

    def loss(self, x):
        return np.sum(np.sin(self.apply(x)))


def test_a_class_changed_later_regenerates_the_gradient():
    """Class constants and methods are folded or inlined: a change to the class is
    checked on each call (as a global's is), never silently kept."""
    obj, x = Scaled(rng.normal(size=(3, 2))), rng.normal(size=(4, 3))
    g = ad.grad(Scaled.loss)
    for _ in range(2):
        assert_tree_close(g(obj, x), fd(Scaled.loss, (obj, x), 0))
    original = Scaled.apply
    try:
        Scaled.factor = 3.0
        assert_tree_close(g(obj, x), fd(Scaled.loss, (obj, x), 0))
        Scaled.apply = lambda self, x: np.tanh(x @ self.W)  # noqa: E731
        assert_tree_close(g(obj, x), fd(Scaled.loss, (obj, x), 0))
    finally:
        Scaled.factor, Scaled.apply = 2.0, original
    assert_tree_close(g(obj, x), fd(Scaled.loss, (obj, x), 0))


def _pair(p, x):
    pred = np.tanh(x @ p.W + p.b)
    return np.sum(pred**2), pred


def test_vjp_with_namedtuple_params_and_jvp_of_a_method():
    p, (x, y) = params(), data()
    c = (0.5, rng.normal(size=(5, 2)))

    def along(q, x):
        value, pred = _pair(q, x)
        return c[0] * value + np.sum(c[1] * pred)

    for _ in range(3):
        (value, pred), g = ad.vjp(_pair)(p, x, c)
        assert isinstance(g, Params)
        assert_tree_close(g, fd(along, (p, x), 0))
    layer, t = Linear(p.W, p.b), Linear(*params())

    def moved(s):
        return Linear(layer.W + s * t.W, layer.b + s * t.b)

    expected = (moved(EPS).loss(x, y) - moved(-EPS).loss(x, y)) / (2 * EPS)
    for _ in range(3):
        value, d = ad.jvp(layer.loss, wrt="self")(x, y, t)
        assert value == pytest.approx(layer.loss(x, y))
        assert d == pytest.approx(expected, rel=1e-6)


class Callable2:
    def __init__(self, W):
        self.W = W

    def __call__(self, x):
        return np.sum(np.tanh(x @ self.W))


def test_a_callable_object_is_its_call_method():
    model, x = Callable2(rng.normal(size=(3, 2))), rng.normal(size=(4, 3))
    for _ in range(3):
        np.testing.assert_allclose(ad.grad(model)(x), fd(Callable2.__call__, (model, x), 1))
        assert_tree_close(ad.grad(model, wrt="self")(x), fd(Callable2.__call__, (model, x), 0))


def rnn_record(p, xs):
    h = np.zeros(p.b.shape)
    for t in range(xs.shape[0]):  # a loop at run time, a branch on data, a while
        h = np.tanh(xs[t] @ p.W + h * 0.5 + p.b)
        if np.sum(h) > 0:
            h = h * 0.9
    n = 0
    while n < 3:
        h = h * p.b
        n += 1
    return np.sum(h**2)


def test_records_through_loops_and_branches():
    p, xs = params(), rng.normal(size=(6, 3))
    t = params()
    expected = fd(rnn_record, (p, xs), 0)

    def along(s):
        return rnn_record(Params(p.W + s * t.W, p.b + s * t.b), xs)

    for _ in range(3):
        g = ad.grad(rnn_record)(p, xs)
        assert_tree_close(g, expected)
        value, d = ad.jvp(rnn_record)(p, xs, t)
        assert d == pytest.approx((along(EPS) - along(-EPS)) / (2 * EPS), rel=1e-6)
        assert d == pytest.approx(np.sum(g.W * t.W) + np.sum(g.b * t.b), rel=1e-10)  # fwd/rev


class Flagged(NamedTuple):
    W: np.ndarray
    flag: object
    count: object


def flagged_loss(p, x):
    scale = 1.0 if p.flag is True else 2.0
    return scale * np.sum(np.sin(x @ p.W)) * (p.count + 1)


def test_record_constants_are_keyed_by_value_and_type():
    W, x = rng.normal(size=(3, 2)), rng.normal(size=(4, 3))
    g = ad.grad(flagged_loss)
    for p in [Flagged(W, True, 1), Flagged(W, 1, 1), Flagged(W, True, np.int64(2))]:
        for _ in range(2):
            got = g(p, x)
            assert got.flag is p.flag and got.count is p.count
            assert_tree_close(got, fd(flagged_loss, (p, x), 0))


def test_hessian_and_jacobian_refuse_structured_arguments():
    p, (x, y) = params(), data()
    with pytest.raises(DifferentiationTypeError, match="hessian takes arrays; .* ad.hvp"):
        ad.hessian(loss)(p, x, y)
    with pytest.raises(DifferentiationTypeError, match="jacobian takes arrays"):
        ad.jacobian(_predict)(p, x)


def test_hessian_and_jacobian_of_a_partial():
    x, w = np.linspace(0.1, 1.0, 3), np.linspace(-1.0, 2.0, 3)
    h = ad.hessian(functools.partial(plain, x=x))(w)
    g = ad.grad(plain)
    columns = [(g(w + EPS * e, x) - g(w - EPS * e, x)) / (2 * EPS) for e in np.eye(3)]
    np.testing.assert_allclose(h, np.stack(columns, axis=-1), rtol=1e-6, atol=1e-8)
    for mode in ("forward", "reverse"):
        j = ad.jacobian(functools.partial(_sin_times, x=x), mode=mode)(w)
        np.testing.assert_allclose(j, np.diag(x * np.cos(w * x)), rtol=1e-12)


def _sin_times(w, x):
    return np.sin(w * x)
