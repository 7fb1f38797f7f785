"""A 784-128-64-10 tanh multilayer perceptron with softmax cross-entropy."""

import numpy as np

NAME = "mlp"
WRT = ("W1", "b1", "W2", "b2", "W3", "b3")
STATIC = ()
LAYERS = (784, 128, 64, 10)
SIZES = {"small": {"batch": 32}, "large": {"batch": 512}}
SIZE_LABELS = {"small": "batch 32", "large": "batch 512"}


def primal(W1, b1, W2, b2, W3, b3, X, Y):
    h1 = np.tanh(X @ W1 + b1)
    h2 = np.tanh(h1 @ W2 + b2)
    logits = h2 @ W3 + b3
    shifted = logits - np.max(logits, axis=1, keepdims=True)
    log_probs = shifted - np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    return -np.sum(Y * log_probs) / X.shape[0]


def make_inputs(size, seed=0):
    batch = SIZES[size]["batch"]
    rng = np.random.default_rng(seed)
    inputs = {}
    for layer, (fan_in, fan_out) in enumerate(zip(LAYERS[:-1], LAYERS[1:], strict=True), 1):
        inputs[f"W{layer}"] = rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)
        inputs[f"b{layer}"] = 0.01 * rng.standard_normal(fan_out)
    inputs["X"] = rng.standard_normal((batch, LAYERS[0]))
    inputs["Y"] = np.eye(LAYERS[-1])[rng.integers(0, LAYERS[-1], size=batch)]
    return inputs


def value_and_grad(W1, b1, W2, b2, W3, b3, X, Y):
    """Textbook backpropagation with in-place activations."""
    batch = X.shape[0]
    h1 = X @ W1
    h1 += b1
    np.tanh(h1, out=h1)
    h2 = h1 @ W2
    h2 += b2
    np.tanh(h2, out=h2)
    shifted = h2 @ W3
    shifted += b3
    shifted -= shifted.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    normalizer = probs.sum(axis=1, keepdims=True)
    label_mass = Y.sum(axis=1, keepdims=True)
    value = -(np.vdot(Y, shifted) - np.vdot(label_mass, np.log(normalizer))) / batch
    # d loss / d logits = (softmax * sum(Y) - Y) / batch
    probs *= label_mass / normalizer
    probs -= Y
    probs /= batch
    grad_W3, grad_b3 = h2.T @ probs, probs.sum(axis=0)
    delta2 = probs @ W3.T
    delta2 *= 1.0 - h2 * h2
    grad_W2, grad_b2 = h1.T @ delta2, delta2.sum(axis=0)
    delta1 = delta2 @ W2.T
    delta1 *= 1.0 - h1 * h1
    grad_W1, grad_b1 = X.T @ delta1, delta1.sum(axis=0)
    return value, (grad_W1, grad_b1, grad_W2, grad_b2, grad_W3, grad_b3)


def torch_primal(torch):
    def loss(W1, b1, W2, b2, W3, b3, X, Y):
        h1 = torch.tanh(X @ W1 + b1)
        h2 = torch.tanh(h1 @ W2 + b2)
        logits = h2 @ W3 + b3
        shifted = logits - torch.amax(logits, dim=1, keepdim=True)
        log_probs = shifted - torch.log(torch.sum(torch.exp(shifted), dim=1, keepdim=True))
        return -torch.sum(Y * log_probs) / X.shape[0]

    return loss
