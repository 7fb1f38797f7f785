"""Training-history plots (matplotlib is an optional extra: ``pip install adcompiler[plot]``)."""

from __future__ import annotations

import os


def plot_history(history: dict, path: str | os.PathLike) -> str:
    """Draw loss curves (left) and metric curves (right) per epoch to a PNG file.

    Args:
        history: ``FitResult.history``.
        path: the PNG to write.

    Returns:
        the path written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plotting the training history needs matplotlib, an optional extra: "
            "pip install 'adcompiler[plot]' (or pip install matplotlib)"
        ) from None
    epochs = history.get("epoch", [])
    losses = [k for k in ("loss", "val_loss") if k in history]
    metrics = [k for k in history if k.startswith("val_") and k != "val_loss"]
    figure, axes = plt.subplots(
        1, 2 if metrics else 1, figsize=(10 if metrics else 5, 4), squeeze=False
    )
    for key in losses:
        axes[0][0].plot(epochs, history[key], marker="o", label=key)
    axes[0][0].set_xlabel("epoch")
    axes[0][0].set_ylabel("loss")
    axes[0][0].legend()
    if metrics:
        for key in metrics:
            axes[0][1].plot(epochs, history[key], marker="o", label=key)
        axes[0][1].set_xlabel("epoch")
        axes[0][1].legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return os.fspath(path)
