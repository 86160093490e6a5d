"""Comparing query vectors that came from different passes."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def assert_same_vectors(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32], bf16: bool) -> None:
    """Equal to fp32 rounding; in bf16, the batch a text was padded in moves the last digits."""
    assert a.shape == b.shape
    if bf16:
        assert float(np.min(np.sum(a * b, axis=1))) >= 0.9999
    else:
        np.testing.assert_allclose(a, b, atol=2e-6)
