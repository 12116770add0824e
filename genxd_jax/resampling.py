"""1-D linear resampling as a matrix, in the three pixel conventions the reference implementations use.

Resizing an (..., H, W, C) image to (h, w) without antialiasing is `R_h · x · R_wᵀ` with `R_h =
linear_resize_matrix(H, h, convention)`; apply it with an einsum at `precision="highest"`. Output pixel `d` samples
the input at a source coordinate `s(d)`, linearly between pixels ⌊s⌋ and ⌊s⌋ + 1, the last pixel repeated past the
edge:

=================  ======================================  ===================================================
convention         s(d)                                    reference
=================  ======================================  ===================================================
``tf1``            d · n_in / n_out                        TF1 ``resize_bilinear(align_corners=False)``
                                                           (no half-pixel centres): TTUR FID, I3D/FVD
``half_pixel``     max((d + ½) · n_in / n_out − ½, 0)      torch ``interpolate(align_corners=False)``,
                                                           ``jax.image.resize(antialias=False)``
``align_corners``  d · (n_in − 1) / (n_out − 1)            torch ``interpolate(align_corners=True)``
=================  ======================================  ===================================================
"""

from __future__ import annotations

import numpy as np

LINEAR_CONVENTIONS = ("tf1", "half_pixel", "align_corners")


def linear_resize_matrix(n_in: int, n_out: int, convention: str) -> np.ndarray:
    """(n_out, n_in) float64 weights of 1-D linear resampling in `convention` (see the module table)."""
    if convention not in LINEAR_CONVENTIONS:
        raise ValueError(f"unknown resampling convention {convention!r}; expected one of {LINEAR_CONVENTIONS}")
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    dst = np.arange(n_out, dtype=np.float64)
    if convention == "tf1":
        src = dst * (n_in / n_out)
    elif convention == "half_pixel":
        src = np.maximum((dst + 0.5) * (n_in / n_out) - 0.5, 0.0)
    else:
        src = dst * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(1)
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


__all__ = ["LINEAR_CONVENTIONS", "linear_resize_matrix"]
