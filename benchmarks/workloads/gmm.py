"""ADBench's Gaussian-mixture objective (GMM), vectorised over points and components.

The objective is the one ADBench differentiates (``gmm_objective`` in
microsoft/ADBench, src/cpp/shared/gmm.h and src/python/modules/PyTorch/gmm_objective.py):

    err = -n d / 2 log(2 pi)
          + sum_i logsumexp_k(alpha_k + sum(q_k) - 1/2 |Q_k (x_i - mu_k)|^2)
          - n logsumexp(alpha)
          + sum_k (gamma^2 / 2 (|exp(q_k)|^2 + |l_k|^2) - m sum(q_k))
          - K (n_w d log(gamma / sqrt 2) - log Gamma_d(n_w / 2)),   n_w = d + m + 1

``Q_k = diag(exp(q_k)) + L_k`` is the inverse-covariance factor: ``icf[k]`` holds the
``d`` log-diagonal entries ``q_k`` and then the strictly lower entries ``l_k`` of
``L_k``, column by column. The Wishart term is written exactly as ADBench writes it.
``log Gamma_d(n_w / 2)`` does not depend on the parameters: it is computed once by
``make_inputs`` and passed in as ``log_multigamma``, as a user writing for a
NumPy-only compiler would do.
"""

import math

import numpy as np

NAME = "gmm"
WRT = ("alphas", "means", "icf")
STATIC = ("wishart_gamma", "wishart_m", "log_multigamma")  # plain numbers
SIZES = {"small": {"d": 2, "K": 5, "n": 1000}, "large": {"d": 10, "K": 25, "n": 1000}}
SIZE_LABELS = {"small": "d=2 K=5 n=1k", "large": "d=10 K=25 n=1k"}
WISHART_GAMMA = 1.0  # ADBench's data files use gamma = 1, m = 0
WISHART_M = 0


def primal(alphas, means, icf, x, wishart_gamma, wishart_m, log_multigamma):
    n, d = x.shape
    K = alphas.shape[0]
    q = icf[:, :d]
    Qdiags = np.exp(q)
    sum_qs = np.sum(q, axis=1)
    # L[k, r, c] = icf[k, d + (offset of column c) + (r - c - 1)] below the diagonal, else 0
    row = np.arange(d)[:, None]
    col = np.arange(d)[None, :]
    lower = row > col
    tril_index = np.where(lower, d + col * d - col * (col + 1) // 2 + row - col - 1, 0)
    Ls = icf[:, tril_index] * lower
    xcentered = x[None, :, :] - means[:, None, :]
    Qx = Qdiags[:, None, :] * xcentered + xcentered @ np.swapaxes(Ls, 1, 2)
    inner = alphas[:, None] + sum_qs[:, None] - 0.5 * np.sum(Qx * Qx, axis=2)
    inner_max = np.max(inner, axis=0)
    slse = np.sum(np.log(np.sum(np.exp(inner - inner_max), axis=0)) + inner_max)
    alphas_max = np.max(alphas)
    lse_alphas = np.log(np.sum(np.exp(alphas - alphas_max))) + alphas_max
    n_w = d + wishart_m + 1
    frobenius = np.sum(Qdiags * Qdiags) + np.sum(icf[:, d:] * icf[:, d:])
    prior = 0.5 * wishart_gamma * wishart_gamma * frobenius - wishart_m * np.sum(sum_qs)
    C = n_w * d * np.log(wishart_gamma / np.sqrt(2.0)) - log_multigamma
    return -0.5 * n * d * np.log(2.0 * np.pi) + slse - n * lse_alphas + prior - K * C


def make_inputs(size, seed=0):
    """Random parameters and points in the manner of ADBench's gmm-data-gen.py."""
    d, K, n = SIZES[size]["d"], SIZES[size]["K"], SIZES[size]["n"]
    rng = np.random.default_rng(seed)
    return {
        "alphas": rng.standard_normal(K),
        "means": rng.uniform(size=(K, d)),
        "icf": 0.5 * rng.standard_normal((K, d * (d + 1) // 2)),
        "x": rng.standard_normal((n, d)),
        "wishart_gamma": WISHART_GAMMA,
        "wishart_m": WISHART_M,
        "log_multigamma": log_multigamma(0.5 * (d + WISHART_M + 1), d),
    }


def log_multigamma(a, d):
    """log Gamma_d(a), the multivariate gamma function (scipy.special.multigammaln)."""
    terms = sum(math.lgamma(a - 0.5 * j) for j in range(d))
    return 0.25 * d * (d - 1) * math.log(math.pi) + terms


def lower_indices(d):
    """Rows and columns of the strictly lower entries, in ADBench's column-major order."""
    cols, rows = np.triu_indices(d, 1)
    return rows, cols


def value_and_grad(alphas, means, icf, x, wishart_gamma, wishart_m, log_multigamma):
    """Responsibilities give every adjoint; one batched product gives dQ for all k."""
    n, d = x.shape
    K = alphas.shape[0]
    rows, cols = lower_indices(d)
    q = icf[:, :d]
    Qdiags = np.exp(q)
    Ls = np.zeros((K, d, d))
    Ls[:, rows, cols] = icf[:, d:]
    xcentered = x[None, :, :] - means[:, None, :]  # (K, n, d)
    Qx = xcentered @ Ls.transpose(0, 2, 1)
    Qx += Qdiags[:, None, :] * xcentered
    inner = np.einsum("kij,kij->ki", Qx, Qx)
    inner *= -0.5
    inner += (alphas + q.sum(axis=1))[:, None]
    inner_max = inner.max(axis=0)
    inner -= inner_max
    np.exp(inner, out=inner)
    total = inner.sum(axis=0)
    slse = np.log(total).sum() + inner_max.sum()
    inner /= total  # responsibilities r[k, i]
    alphas_max = alphas.max()
    weights = np.exp(alphas - alphas_max)
    weight_total = weights.sum()
    lse_alphas = np.log(weight_total) + alphas_max
    n_w = d + wishart_m + 1
    gamma2 = wishart_gamma * wishart_gamma
    frobenius = np.vdot(Qdiags, Qdiags) + np.vdot(icf[:, d:], icf[:, d:])
    prior = 0.5 * gamma2 * frobenius - wishart_m * q.sum()
    C = n_w * d * np.log(wishart_gamma / np.sqrt(2.0)) - log_multigamma
    value = -0.5 * n * d * np.log(2.0 * np.pi) + slse - n * lse_alphas + prior - K * C

    mass = inner.sum(axis=1)  # sum_i r[k, i]
    grad_alphas = mass - n * weights / weight_total
    Qx *= -inner[:, :, None]  # adjoint of Qx
    products = Qx.transpose(0, 2, 1) @ xcentered  # (K, d, d): sum_i dQx_i xcentered_i^T
    grad_icf = np.empty_like(icf)
    diagonal = np.arange(d)
    grad_icf[:, :d] = products[:, diagonal, diagonal] * Qdiags
    grad_icf[:, :d] += gamma2 * Qdiags * Qdiags + (mass - wishart_m)[:, None]
    grad_icf[:, d:] = products[:, rows, cols] + gamma2 * icf[:, d:]
    adjoint_sum = Qx.sum(axis=1)  # (K, d)
    grad_means = -(Qdiags * adjoint_sum + np.einsum("kr,krc->kc", adjoint_sum, Ls))
    return value, (grad_alphas, grad_means, grad_icf)


def torch_primal(torch):
    def objective(alphas, means, icf, x, wishart_gamma, wishart_m, log_multigamma):
        n, d = x.shape
        K = alphas.shape[0]
        q = icf[:, :d]
        Qdiags = torch.exp(q)
        sum_qs = torch.sum(q, dim=1)
        rows, cols = lower_indices(d)
        Ls = torch.zeros((K, d, d), dtype=icf.dtype)
        Ls[:, rows, cols] = icf[:, d:]
        xcentered = x[None, :, :] - means[:, None, :]
        Qx = Qdiags[:, None, :] * xcentered + xcentered @ Ls.transpose(1, 2)
        inner = alphas[:, None] + sum_qs[:, None] - 0.5 * torch.sum(Qx * Qx, dim=2)
        slse = torch.sum(torch.logsumexp(inner, dim=0))
        lse_alphas = torch.logsumexp(alphas, dim=0)
        n_w = d + wishart_m + 1
        frobenius = torch.sum(Qdiags * Qdiags) + torch.sum(icf[:, d:] * icf[:, d:])
        prior = 0.5 * wishart_gamma**2 * frobenius - wishart_m * torch.sum(sum_qs)
        C = n_w * d * np.log(wishart_gamma / np.sqrt(2.0)) - log_multigamma
        return -0.5 * n * d * np.log(2.0 * np.pi) + slse - n * lse_alphas + prior - K * C

    return objective
