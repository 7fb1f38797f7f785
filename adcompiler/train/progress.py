"""What training prints while it runs: a progress bar in a terminal, plain lines in a log.

A progress bar redraws itself with carriage returns, which a log file
(``2>&1 | tee run.log``, CI output) keeps as one long line of every redraw.
So the bar is shown only when standard error is a terminal (or in a Jupyter
kernel, where it is a widget); elsewhere the one line per epoch is the
progress report.
"""

from __future__ import annotations

import sys


def interactive(stream=None) -> bool:
    """True when a progress bar on ``stream`` (default: standard error) would be redrawn in
    place: a terminal, or a Jupyter kernel."""
    stream = sys.stderr if stream is None else stream
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    return "ipykernel" in sys.modules


def progress_bar(total: int, initial: int, desc: str, quiet: bool):
    """A tqdm bar for one epoch's steps, disabled when ``quiet`` or not :func:`interactive`."""
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        disable=quiet or not interactive(),
        leave=False,
        desc=desc,
        unit="step",
    )


def epoch_line(record: dict, epochs: int) -> str:
    """``epoch 3/10: loss 0.4121, val_loss 0.4410, val_accuracy 0.8812, lr 0.001, 1.25 s``."""
    shown = [
        f"{key} {value:.4g}" for key, value in record.items() if key not in ("epoch", "time")
    ]
    if "time" in record:
        shown.append(f"{record['time']:.2f} s")
    return f"epoch {record['epoch']}/{epochs}: {', '.join(shown)}"
