"""An LSTM unrolled over T steps, with a linear read-out and a squared-error loss.

Gates are packed ``[input, forget, output, candidate]`` along the last axis. The
input and read-out widths equal the hidden width H.
"""

import numpy as np

NAME = "lstm"
WRT = ("Wx", "Wh", "b", "Wy", "by")
STATIC = ()
SIZES = {"small": {"T": 20, "H": 8, "B": 1}, "large": {"T": 50, "H": 32, "B": 32}}
SIZE_LABELS = {"small": "T=20 H=8 B=1", "large": "T=50 H=32 B=32"}


def primal(Wx, Wh, b, Wy, by, xs, ys):
    T, B, _ = xs.shape
    H = Wh.shape[0]
    h = np.zeros((B, H))
    c = np.zeros((B, H))
    total = 0.0
    for t in range(T):
        gates = xs[t] @ Wx + h @ Wh + b
        i = 1.0 / (1.0 + np.exp(-gates[:, :H]))
        f = 1.0 / (1.0 + np.exp(-gates[:, H : 2 * H]))
        o = 1.0 / (1.0 + np.exp(-gates[:, 2 * H : 3 * H]))
        g = np.tanh(gates[:, 3 * H :])
        c = f * c + i * g
        h = o * np.tanh(c)
        err = h @ Wy + by - ys[t]
        total = total + np.sum(err * err)
    return 0.5 * total / B


def make_inputs(size, seed=0):
    T, H, B = SIZES[size]["T"], SIZES[size]["H"], SIZES[size]["B"]
    rng = np.random.default_rng(seed)
    scale = 1.0 / np.sqrt(H)
    return {
        "Wx": scale * rng.standard_normal((H, 4 * H)),
        "Wh": scale * rng.standard_normal((H, 4 * H)),
        "b": 0.1 * rng.standard_normal(4 * H),
        "Wy": scale * rng.standard_normal((H, H)),
        "by": 0.1 * rng.standard_normal(H),
        "xs": rng.standard_normal((T, B, H)),
        "ys": rng.standard_normal((T, B, H)),
    }


def value_and_grad(Wx, Wh, b, Wy, by, xs, ys):
    """Input and read-out products hoisted out of the time loop; BPTT over saved gates."""
    T, B, D = xs.shape
    H = Wh.shape[0]
    gates = (xs.reshape(T * B, D) @ Wx).reshape(T, B, 4 * H)
    gates += b
    hs = np.zeros((T + 1, B, H))  # hs[t] is the state before step t
    cs = np.zeros((T + 1, B, H))
    tanh_cs = np.empty((T, B, H))
    for t in range(T):
        step = gates[t]
        step += hs[t] @ Wh
        sig = step[:, : 3 * H]
        np.negative(sig, out=sig)
        np.exp(sig, out=sig)
        sig += 1.0
        np.reciprocal(sig, out=sig)
        np.tanh(step[:, 3 * H :], out=step[:, 3 * H :])
        i, f, o, g = step[:, :H], step[:, H : 2 * H], step[:, 2 * H : 3 * H], step[:, 3 * H :]
        np.multiply(f, cs[t], out=cs[t + 1])
        cs[t + 1] += i * g
        np.tanh(cs[t + 1], out=tanh_cs[t])
        np.multiply(o, tanh_cs[t], out=hs[t + 1])
    outputs = hs[1:].reshape(T * B, H)
    err = outputs @ Wy
    err += by
    err -= ys.reshape(T * B, -1)
    value = 0.5 * np.vdot(err, err) / B
    err /= B  # adjoint of the read-out
    grad_Wy, grad_by = outputs.T @ err, err.sum(axis=0)
    adjoint_hs = (err @ Wy.T).reshape(T, B, H)
    adjoint_gates = np.empty_like(gates)
    adjoint_c = np.zeros((B, H))
    for t in range(T - 1, -1, -1):
        step, adjoint = gates[t], adjoint_gates[t]
        i, f, o, g = step[:, :H], step[:, H : 2 * H], step[:, 2 * H : 3 * H], step[:, 3 * H :]
        adjoint_h = adjoint_hs[t]
        adjoint_c += adjoint_h * o * (1.0 - tanh_cs[t] * tanh_cs[t])
        np.multiply(adjoint_c, g * i * (1.0 - i), out=adjoint[:, :H])
        np.multiply(adjoint_c, cs[t] * f * (1.0 - f), out=adjoint[:, H : 2 * H])
        np.multiply(adjoint_h, tanh_cs[t] * o * (1.0 - o), out=adjoint[:, 2 * H : 3 * H])
        np.multiply(adjoint_c, i * (1.0 - g * g), out=adjoint[:, 3 * H :])
        adjoint_c *= f
        if t > 0:
            adjoint_hs[t - 1] += adjoint @ Wh.T
    flat_adjoint = adjoint_gates.reshape(T * B, 4 * H)
    grad_Wx = xs.reshape(T * B, D).T @ flat_adjoint
    grad_Wh = hs[:T].reshape(T * B, H).T @ flat_adjoint
    grad_b = flat_adjoint.sum(axis=0)
    return value, (grad_Wx, grad_Wh, grad_b, grad_Wy, grad_by)


def torch_primal(torch):
    def loss(Wx, Wh, b, Wy, by, xs, ys):
        T, B, _ = xs.shape
        H = Wh.shape[0]
        h = torch.zeros((B, H), dtype=xs.dtype)
        c = torch.zeros((B, H), dtype=xs.dtype)
        total = 0.0
        for t in range(T):
            gates = xs[t] @ Wx + h @ Wh + b
            i = torch.sigmoid(gates[:, :H])
            f = torch.sigmoid(gates[:, H : 2 * H])
            o = torch.sigmoid(gates[:, 2 * H : 3 * H])
            g = torch.tanh(gates[:, 3 * H :])
            c = f * c + i * g
            h = o * torch.tanh(c)
            err = h @ Wy + by - ys[t]
            total = total + torch.sum(err * err)
        return 0.5 * total / B

    return loss
