"""Regenerate the committed data files from scikit-learn's bundled copies (run once, offline).

    python adcompiler/samples/data/make_data.py

digits.npz:   images (1797, 8, 8) uint8 in 0..16, labels (1797,) uint8
              -- sklearn.datasets.load_digits (UCI optical recognition of handwritten digits)
diabetes.npz: features (442, 10) float64 (unscaled), target (442,) float64, feature_names
              -- sklearn.datasets.load_diabetes(scaled=False) (Efron et al., 2004)

The samples read these files with numpy alone; scikit-learn is not needed at run time.
"""

import os

import numpy as np
from sklearn.datasets import load_diabetes, load_digits

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    digits = load_digits()
    np.savez_compressed(
        os.path.join(HERE, "digits.npz"),
        images=digits.images.astype(np.uint8),
        labels=digits.target.astype(np.uint8),
    )
    diabetes = load_diabetes(scaled=False)
    np.savez_compressed(
        os.path.join(HERE, "diabetes.npz"),
        features=diabetes.data.astype(np.float64),
        target=diabetes.target.astype(np.float64),
        feature_names=np.array(diabetes.feature_names),
    )


if __name__ == "__main__":
    main()
