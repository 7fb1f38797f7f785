"""Optimizer steps against values worked out by hand, on a one-number parameter.

Every case starts from p = 1 and applies gradients 0.5, then (where given) a second one.
"""

import numpy as np
import pytest

from adcompiler.train import SGD, Adam, AdamW, momentum, nesterov
from adcompiler.train.optimizers import make_optimizer
from adcompiler.train.schedules import constant, cosine, step_decay, warmup


def run(optimizer, grads):
    params = np.array(1.0)
    state = optimizer.init(params)
    values = []
    for g in grads:
        params, state = optimizer.update(params, np.array(g), state)
        values.append(float(params))
    return values, state


def test_sgd():
    # p = 1 - 0.1 * 0.5
    assert run(SGD(0.1), [0.5])[0] == pytest.approx([0.95], abs=1e-15)


def test_sgd_weight_decay_adds_l2_gradient():
    # g' = 0.5 + 0.1 * 1 = 0.6; p = 1 - 0.1 * 0.6
    assert run(SGD(0.1, weight_decay=0.1), [0.5])[0] == pytest.approx([0.94], abs=1e-15)


def test_momentum():
    # v1 = 0.5, p1 = 0.95; v2 = 0.9 * 0.5 + 0.5 = 0.95, p2 = 0.95 - 0.095
    values, state = run(momentum(0.1, mu=0.9), [0.5, 0.5])
    assert values == pytest.approx([0.95, 0.855], abs=1e-15)
    assert state["step"] == 2 and float(state["velocity"]) == pytest.approx(0.95)


def test_nesterov():
    # v1 = 0.5, p1 = 1 - 0.1 * (0.5 + 0.9 * 0.5) = 0.905
    # v2 = 0.95, p2 = 0.905 - 0.1 * (0.5 + 0.9 * 0.95) = 0.7695
    assert run(nesterov(0.1, mu=0.9), [0.5, 0.5])[0] == pytest.approx([0.905, 0.7695], abs=1e-15)


def test_adam():
    # step 1: m = 0.05, v = 0.00025, m_hat = 0.5, v_hat = 0.25 -> p = 1 - 0.1 * 0.5 / (0.5 + 1e-8)
    # step 2 (g = -1): m = -0.055, v = 0.00124975, m_hat = -0.055 / 0.19,
    #   v_hat = 0.00124975 / 0.001999 -> p = p1 + 0.1 * 0.28947.. / (0.79069.. + 1e-8)
    values, state = run(Adam(0.1), [0.5, -1.0])
    assert values == pytest.approx([0.900000002, 0.9366103542405654], abs=1e-12)
    assert state["step"] == 2
    assert float(state["m"]) == pytest.approx(-0.055) and float(state["v"]) == pytest.approx(
        0.00124975
    )


def test_adamw_decouples_weight_decay():
    # p = 1 - 0.1 * 0.1 * 1 - 0.1 * 0.5 / (0.5 + 1e-8)
    values, _ = run(AdamW(0.1, weight_decay=0.1), [0.5])
    assert values == pytest.approx([1 - 0.01 - 0.1 * 0.5 / (0.5 + 1e-8)], abs=1e-15)
    # Adam's weight decay is L2 in the gradient instead: g = 0.6, m_hat = 0.6, v_hat = 0.36
    values, _ = run(Adam(0.1, weight_decay=0.1), [0.5])
    assert values == pytest.approx([1 - 0.1 * 0.6 / (0.6 + 1e-8)], abs=1e-12)


def test_optimizers_work_over_structures_and_are_pure():
    params = {"W": np.ones((2, 2)), "layers": (np.zeros(3), [np.full(1, 2.0)])}
    grads = {"W": np.full((2, 2), 0.5), "layers": (np.ones(3), [np.ones(1)])}
    for optimizer in (SGD(0.1), momentum(0.1), nesterov(0.1), Adam(0.1), AdamW(0.1)):
        state = optimizer.init(params)
        new, state = optimizer.update(params, grads, state)
        assert np.all(params["W"] == 1.0), "inputs must not be modified"
        assert new["layers"][1][0].shape == (1,) and isinstance(new["layers"], tuple)
        assert state["step"] == 1
        assert new["W"][0, 0] < 1.0 and new["layers"][0][0] < 0.0


def test_optimizer_uses_schedule_by_step():
    schedule = step_decay(0.1, every=1, factor=0.5)  # 0.1, 0.05, 0.025
    values, _ = run(SGD(schedule), [1.0, 1.0, 1.0])
    assert values == pytest.approx([0.9, 0.85, 0.825], abs=1e-15)
    assert SGD(schedule).learning_rate(2) == pytest.approx(0.025)


def test_schedules():
    assert constant(0.3)(1000) == 0.3
    assert step_decay(0.1, every=10, factor=0.5)(25) == pytest.approx(0.025)
    c = cosine(1.0, total_steps=100, final_lr=0.0)
    assert (c(0), c(50), c(100), c(500)) == pytest.approx((1.0, 0.5, 0.0, 0.0), abs=1e-15)
    w = warmup(constant(1.0), steps=4)
    assert [w(s) for s in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert warmup(0.5, steps=2)(0) == pytest.approx(0.25)


def test_make_optimizer_by_name():
    assert make_optimizer("Adam", 0.01) == Adam(0.01)
    assert make_optimizer("nesterov", 0.1).nesterov
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("lion", 0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        SGD(0.1, nesterov=True)
