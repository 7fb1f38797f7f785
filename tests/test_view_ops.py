"""The view operators (issues 13 and 14): adcompiler/ops/views.py.

Each is checked for values and derivatives against float64 central differences (grad,
jvp, hvp; the first call and the later, specialized calls), and for writes through the
view: followed as NumPy does for a writable view, refused with a located error for a
read-only one.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view as swv

import adcompiler as ad
from adcompiler.errors import UnsupportedSyntaxError

W = np.arange(24.0).reshape(2, 3, 4) / 10 - 1  # weights: every entry counts differently


def moveaxis(x):
    return np.sum(np.moveaxis(x, 0, -1) ** 2 * np.moveaxis(W, 0, -1))


def moveaxis_tuple(x):
    return np.sum(np.sin(np.moveaxis(x, (0, 2), (1, 0))) * np.moveaxis(W, (0, 2), (1, 0)))


def rollaxis(x):
    return np.sum(np.rollaxis(x, 2) ** 2 * np.rollaxis(W, 2))


def rollaxis_start(x):
    return np.sum(np.rollaxis(x, 0, 3) ** 3 * np.rollaxis(W, 0, 3))


def swapaxes_method(x):
    return np.sum(x.swapaxes(0, 2) ** 3 * np.swapaxes(W, 0, 2))


def mT(x):  # noqa: N802
    return np.sum(x.mT**3 * W.mT)


def matrix_transpose(x):
    return np.sum(np.matrix_transpose(x) ** 2 * np.linalg.matrix_transpose(W))


def flip(x):
    return np.sum(np.flip(x, axis=1) * W * x)


def flip_all(x):
    return np.sum(np.flip(x) ** 2 * W)


def flipud(x):
    return np.sum(np.flipud(x) * W * x)


def fliplr(x):
    return np.sum(np.fliplr(x) * W * x)


def rot90(x):
    return np.sum(np.rot90(x) ** 2 * np.rot90(W))


def rot90_axes(x):
    return np.sum(np.rot90(x, 3, axes=(1, 2)) ** 2 * np.rot90(W, -1, axes=(1, 2)))


def diagonal(x):
    return np.sum(np.diagonal(x, 1, 1, 2) ** 2 * np.diagonal(W, 1, 1, 2))


def diagonal_method(x):
    return np.sum(x.diagonal(axis1=0, axis2=2) ** 3 * np.diagonal(W, axis1=0, axis2=2))


def diagonal_axes_reversed(x):  # axis1 after axis2, on axes of different lengths
    return np.sum(np.diagonal(x, 1, 2, 0) ** 2 * np.arange(2.0)) + np.sum(
        np.diagonal(x, -1, -1, 1) ** 3
    )


def linalg_diagonal(x):
    return np.sum(np.linalg.diagonal(x, offset=-1) ** 2 * np.linalg.diagonal(W, offset=-1))


def diag_of_matrix(x):
    return np.sum(np.diag(x[0], 1) ** 2 * np.arange(3.0))


def diag_negative_k(x):
    return np.sum(np.diag(x[1], -1) ** 2 * np.arange(2.0)) + np.sum(np.diag(x[0, 1], 2) ** 3)


def windows_last_axis(x):
    return np.sum(swv(x, 3, axis=-1) ** 2 * np.arange(6.0).reshape(2, 3))


def split_keywords(x):
    a, b = np.split(x, indices_or_sections=[1], axis=1)
    return np.sum(a**2) + np.sum(b**3)


def diag_of_vector(x):
    return np.sum(np.diag(x[0, 0], -1) ** 2 * np.arange(25.0).reshape(5, 5))


def atleast(x):
    a = np.sum(np.atleast_3d(x[0]) ** 2 * W[0][:, :, None])
    return a + np.sum(np.atleast_2d(x[0, 0]) ** 3) + np.sum(np.atleast_1d(x[0, 0, 0]) ** 3)


def real_imag(x):
    return np.sum(np.real(x) ** 2 * W) + np.sum(np.imag(x))


def windows(x):
    v = swv(x, (2, 3), axis=(0, 2))
    return np.sum(v**2 * np.arange(36.0).reshape(1, 3, 2, 2, 3))


def windows_1d(x):
    return np.sum(swv(x[0, 0], 2) ** 3)


def split(x):
    a, b = np.split(x, 2, axis=2)
    return np.sum(a**2 * W[:, :, :2]) + np.sum(b**3)


def array_split(x):
    parts = np.array_split(x, [1, 3], axis=-1)
    return np.sum(parts[1] ** 3) + np.sum(parts[0] * parts[2])


def hsplit(x):
    return np.sum(np.hsplit(x, 3)[2] ** 3) + np.sum(np.hsplit(x[0, 0], 2)[1] ** 2)


def vsplit(x):
    a, b = np.vsplit(x, [1])
    return np.sum(a**3) + np.sum(b**2 * W[1:])


def dsplit(x):
    return np.sum(np.dsplit(x, 2)[0] ** 3)


FUNCTIONS = [
    moveaxis, moveaxis_tuple, rollaxis, rollaxis_start, swapaxes_method, mT,
    matrix_transpose, flip, flip_all, flipud, fliplr, rot90, rot90_axes, diagonal,
    diagonal_method, diagonal_axes_reversed, linalg_diagonal, diag_of_matrix, diag_of_vector,
    atleast, real_imag, diag_negative_k, windows_last_axis, split_keywords,
    windows, windows_1d, split, array_split, hsplit, vsplit, dsplit,
]  # fmt: skip


def central_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


@pytest.mark.parametrize("f", FUNCTIONS, ids=lambda f: f.__name__)
def test_grad_jvp_hvp_match_central_differences(f):
    rng = np.random.default_rng(13)
    grad, jvp, hvp = ad.grad(f), ad.jvp(f), ad.hvp(f)
    for _ in range(3):  # the first call, then the specialized version
        x, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
        expected = central_grad(f, x)
        np.testing.assert_allclose(grad(x), expected, rtol=1e-6, atol=1e-6)
        value, d = jvp(x, v)
        np.testing.assert_allclose(value, f(x), rtol=1e-12)
        np.testing.assert_allclose(d, np.sum(expected * v), rtol=1e-6, atol=1e-6)
        eps = 1e-5
        expected_hv = (grad(x + eps * v) - grad(x - eps * v)) / (2 * eps)
        np.testing.assert_allclose(hvp(x, v), expected_hv, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# Writes through the views: followed as NumPy does, or refused where NumPy raises
# ---------------------------------------------------------------------------


def write_moveaxis(x):
    y = x * 1.0
    v = np.moveaxis(y, 0, -1)
    v[0, 1, 0] = 5.0 * x[0, 0, 0]  # y[0, 0, 1]
    y[1, 2, 3] = 2.0 * v[0, 0, 0]  # seen through v[2, 3, 1]
    return np.sum(v**2 * np.moveaxis(W, 0, -1)) + np.sum(y * W)


def write_rollaxis(x):
    y = x * 1.0
    v = np.rollaxis(y, 2, 1)
    v[1, 3] += x[0, :, 0] ** 2  # y[1, :, 3]
    return np.sum(y**2 * W) + np.sum(v[0])


def write_swapaxes_method(x):
    y = np.sin(x)
    v = y.swapaxes(0, 1)
    v[2] = 0.0  # y[:, 2]
    return np.sum(y * W)


def write_mT(x):  # noqa: N802
    y = x * 2.0
    v = y.mT
    v[:, 0, 1] *= y[:, 0, 0]  # y[:, 1, 0]
    return np.sum(y**2 * W) + np.sum(v[1] * y[0].T)


def write_flip(x):
    y = x + 0.0
    v = np.flip(y, axis=2)
    v[..., 0] = x[..., 0] * 3.0  # y[..., 3]
    u = np.flipud(y)
    u[0, 0] = 1.0  # y[1, 0]
    w = np.fliplr(y)
    w[0, 0] += 2.0 * x[1, 1]  # y[0, 2]
    return np.sum(y**2 * W) + np.sum(v * u)


def write_rot90(x):
    y = x * 1.0
    v = np.rot90(y, 1, axes=(1, 2))
    v[0, 0, 0] = x[1, 1, 1] ** 2  # y[0, 0, 3]
    y[0, 1, 3] = 7.0  # v[0, 0, 1]
    return np.sum(v**2 * np.rot90(W, 1, axes=(1, 2)))


def write_atleast(x):
    y = x[0, 0] * 1.0
    v = np.atleast_2d(y)
    v[0, 1] = y[0] * 3.0
    z = x[1] * 1.0
    u = np.atleast_3d(z)
    u[1, 2, 0] = 0.5 * z[0, 0]
    return np.sum(y**2) + np.sum(v * y) + np.sum(z * W[0]) + np.sum(u**2)


def write_real(x):
    y = x * 1.0
    v = np.real(y)
    v[0] = 2.0 * x[1]
    return np.sum(y**2 * W) + np.sum(v)


def write_split(x):
    y = x * 1.0
    a, b = np.split(y, 2, axis=2)
    a[0] = b[1] ** 2  # y[0, :, :2]
    b[1, 2, 1] = 3.0 * x[0, 0, 0]  # y[1, 2, 3]
    c = np.hsplit(y, [1])[1]
    c[0, 0, 0] += 1.0  # y[0, 1, 0]
    y[1, 2, 2] = 5.0  # seen through b[1, 2, 0]
    return np.sum(y * W) + np.sum(a**3) + np.sum(b**2) + np.sum(c * W[:, 1:])


def write_chained_views(x):
    y = x * 1.0
    v = np.flip(y.mT, axis=0)[1:]  # a view of a view of a view
    v[0, 2, 1] = 3.0 * x[0, 0, 0]  # y[0, 1, 2]
    return np.sum(y**2 * W) + np.sum(v)


WRITES = [write_chained_views, write_moveaxis, write_rollaxis, write_swapaxes_method, write_mT,
          write_flip,
          write_rot90, write_atleast, write_real, write_split]  # fmt: skip


@pytest.mark.parametrize("f", WRITES, ids=lambda f: f.__name__)
def test_writes_through_views_are_seen_through_the_base(f):
    rng = np.random.default_rng(14)
    grad, jvp, vg = ad.grad(f), ad.jvp(f), ad.value_and_grad(f)
    for _ in range(3):  # the first call, then the specialized version
        x, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
        expected = central_grad(f, x)
        value, g = vg(x)
        np.testing.assert_allclose(value, f(x), rtol=1e-12)  # NumPy's value
        np.testing.assert_allclose(g, expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(grad(x), expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(jvp(x, v)[1], np.sum(expected * v), rtol=1e-6, atol=1e-6)


def read_only_diagonal(x):
    y = x * 1.0
    d = np.diagonal(y)
    d[0] = 1.0
    return np.sum(y)


def read_only_diagonal_method(x):
    y = x * 1.0
    d = y.diagonal()
    d += 1.0
    return np.sum(y)


def read_only_linalg_diagonal(x):
    y = x * 1.0
    d = np.linalg.diagonal(y)
    d[0] = 1.0
    return np.sum(y)


def read_only_windows(x):
    y = x * 1.0
    v = swv(y, 2, axis=0)
    v[0] = 1.0
    return np.sum(y)


def read_only_imag(x):
    y = x * 1.0
    v = np.imag(y)
    v[0] = 1.0
    return np.sum(y)


def diag_write(x):
    y = x[0] * 1.0
    d = np.diag(y)  # a read-only view of a 2-D y (a new matrix of a 1-D one)
    d[0] = 1.0
    return np.sum(y)


def diag_stale(x):
    y = x[0] * 1.0
    d = np.diag(y)
    y[0, 0] = 5.0  # NumPy's d shows it (a view): adcompiler cannot tell when compiling
    return np.sum(d)


@pytest.mark.parametrize(
    "f, line, message",
    [
        (read_only_diagonal, "d[0] = 1.0", "`np.diagonal`, which NumPy makes read-only"),
        (read_only_diagonal_method, "d += 1.0", "`np.diagonal`, which NumPy makes read-only"),
        (read_only_linalg_diagonal, "d[0] = 1.0", "`np.linalg.diagonal`, which NumPy makes"),
        (read_only_windows, "v[0] = 1.0", "sliding_window_view`, which NumPy makes read-only"),
        (read_only_imag, "v[0] = 1.0", "`np.imag`, which NumPy makes read-only"),
        (diag_write, "d[0] = 1.0", "may be a view of another array or a copy"),
        (diag_stale, "return np.sum(d)", "may be a view of the array written"),
    ],
    ids=lambda p: p.__name__ if callable(p) else "",
)
def test_writes_numpy_refuses_or_cannot_be_followed_are_refused(f, line, message):
    x = np.ones((2, 3, 3))
    if f is not diag_stale and f is not diag_write:
        with pytest.raises(ValueError, match="read-only"):
            f(x)  # NumPy raises too
    with pytest.raises(UnsupportedSyntaxError) as info:
        ad.grad(f)(x)
    text = str(info.value)
    assert message in text, text
    assert line in text and "test_view_ops.py" in text, text


def split_by_argument(x, n):
    return np.sum(np.split(x, n)[0])


def test_the_number_of_parts_must_be_known_when_compiling():
    with pytest.raises(UnsupportedSyntaxError, match="indices_or_sections") as info:
        ad.grad(split_by_argument)(np.ones(4), 2)
    assert "np.split(x, n)" in str(info.value)


def write_view_of_number(x):
    a = x[0] * 2.0  # a number (np.float64): np.atleast_1d and np.expand_dims copy it
    v = np.atleast_1d(a)
    v[0] = 5.0
    return a + v[0]


def write_expand_dims_of_number(x):
    a = x[0] * 2.0
    v = np.expand_dims(a, 0)
    v[0] = 5.0
    return a + v[0]


@pytest.mark.parametrize("f", [write_view_of_number, write_expand_dims_of_number])
def test_a_write_into_an_array_made_from_a_number_is_not_followed_into_it(f):
    # NumPy: `a` keeps its value (v is a new array); following the write into `a` would
    # give a + v[0] = 10 and a zero gradient. Refused at run time, never silently wrong.
    x = np.arange(3.0) + 1.0
    assert f(x) == 7.0
    with pytest.raises(TypeError, match="made from a number"):
        ad.grad(f)(x)


def mT_twice(x):  # noqa: N802
    return np.sum(x.mT**2 * W.mT)


def test_grad_of_grad_through_mT():
    """Regression: `.mT` read in generated code made the bytecode check take the
    argument for a record, and the vjp of the gradient called it with a wrong signature."""
    rng = np.random.default_rng(3)
    x, v = rng.normal(size=(2, 3, 4)), rng.normal(size=(2, 3, 4))
    _, hv = ad.vjp(ad.grad(mT_twice))(x, v)
    np.testing.assert_allclose(hv, 2 * W * v, rtol=1e-10)
