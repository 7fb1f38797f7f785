"""Functions the compiler must refuse, each with every problem reported at once."""

import numpy as np


def many_problems(x):
    try:
        y = x * 2
    except ValueError:
        y = x
    del x
    with open("f") as fh:
        fh.read()
    return np.sum(y)


def unknown_function(x):
    return np.sum(np.fft.fft(x).real)


def assigns_into_array(x):
    x[0] = 1.0
    return np.sum(x)


def uses_global_statement(x):
    global COUNTER
    return np.sum(x)
