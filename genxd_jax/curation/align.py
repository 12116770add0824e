"""Aligning relative dense depth to the SfM scale (paper §3, eq. 2), with depth vs disparity explicit.

``median`` (the paper): ``a = median(d_SfM) / median(d_rel)``, ``b = median(d_SfM − a·d_rel)``, ``d = a·d_rel + b``.
Exact when the relative depth is a pure scale of the true depth; biased when it also has a shift
(spec/curation.md §6), for which ``lstsq`` fits (a, b) by least squares (after a median-based outlier cut).

Disparity (``kind="disparity"``, e.g. Depth Anything V2) is affine in 1/z, so it is aligned in disparity
space against 1/d_SfM and inverted afterwards; ``kind="depth"`` is aligned in depth space. Non-positive aligned
values become NaN (no depth).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from genxd_jax.curation.sparse_depth import sample_map


@dataclasses.dataclass(frozen=True)
class Alignment:
    scale: float
    shift: float
    num_points: int
    space: str  # "depth" or "disparity"

    def apply(self, rel: np.ndarray) -> np.ndarray:
        """Dense relative map → aligned z-depth (NaN where invalid, including where ``rel`` ≤ 0)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(rel > 0, rel.astype(np.float64), np.nan)
            value = self.scale * rel + self.shift
            depth = value if self.space == "depth" else 1.0 / value
        return np.where(np.isfinite(depth) & (depth > 0), depth, np.nan).astype(np.float32)


def fit_scale_shift(rel: np.ndarray, target: np.ndarray, method: str = "median") -> tuple[float, float]:
    """(a, b) with target ≈ a·rel + b. ``median``: paper eq. 2; ``lstsq``: least squares on the points whose
    median-fit residual is within 3 MADs (robust to a few bad SfM points)."""
    rel, target = np.asarray(rel, np.float64), np.asarray(target, np.float64)
    if len(rel) < 2:
        raise ValueError(f"need at least 2 sparse depth samples to align, got {len(rel)}")
    if method == "median":
        a = np.median(target) / np.median(rel)
        return float(a), float(np.median(target - a * rel))
    if method == "lstsq":
        a0 = np.median(target) / np.median(rel)
        res = target - a0 * rel
        res -= np.median(res)
        mad = np.median(np.abs(res)) + 1e-12
        keep = np.abs(res) <= 3 * 1.4826 * mad
        if keep.sum() < 2:
            keep[:] = True
        design = np.stack([rel[keep], np.ones(keep.sum())], 1)
        (a, b), *_ = np.linalg.lstsq(design, target[keep], rcond=None)
        return float(a), float(b)
    raise ValueError(f"unknown alignment {method!r}; expected 'median' or 'lstsq'")


def align_depth(
    rel: np.ndarray, sparse_uv: np.ndarray, sparse_depth: np.ndarray, *, kind: str = "depth",
    method: str = "median",
) -> Alignment:
    """Fits the alignment of a (H, W) relative map ``rel`` of ``kind`` to the sparse SfM depths (N,) at
    COLMAP-convention pixels (N, 2)."""
    if kind not in ("depth", "disparity"):
        raise ValueError(f"depth kind must be 'depth' or 'disparity', got {kind!r}")
    values = sample_map(np.asarray(rel, np.float64), np.asarray(sparse_uv, np.float64))
    # Non-positive or non-finite relative values mark pixels without an estimate (DepthModel protocol).
    ok = np.isfinite(values) & (values > 0) & np.isfinite(sparse_depth) & (sparse_depth > 0)
    if kind == "disparity":
        target = 1.0 / sparse_depth[ok]
    else:
        target = sparse_depth[ok]
    a, b = fit_scale_shift(values[ok], target, method)
    return Alignment(a, b, int(ok.sum()), kind)


def interpolate_sparse_depth(
    sparse_uv: np.ndarray, sparse_depth: np.ndarray, hw: tuple[int, int], *, neighbours: int = 8
) -> np.ndarray:
    """A dense (H, W) z-depth from sparse SfM depths by inverse-distance weighting of the ``neighbours``
    nearest samples (the fallback when no depth source is given: object pixels get the depth of the static
    points around them, so the strength it gives is an approximation; ``meta.json`` says so)."""
    from scipy.spatial import cKDTree

    h, w = hw
    if len(sparse_depth) < 4:
        return np.full(hw, np.nan, np.float32)
    ys, xs = np.mgrid[0:h, 0:w]
    grid = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1)
    k = min(neighbours, len(sparse_depth))
    dist, idx = cKDTree(sparse_uv).query(grid, k=k)
    weight = 1.0 / np.maximum(dist, 0.5) ** 2
    return (np.sum(weight * sparse_depth[idx], 1) / np.sum(weight, 1)).reshape(h, w).astype(np.float32)
