"""Dense depth sources for curation: the :class:`DepthModel` protocol and the non-learned implementations.

A depth source maps one RGB frame to a dense map that is *relative*: known only up to an affine transform
(scale, and for some models a shift). :mod:`genxd_jax.curation.align` turns it into metric-ish depth in the
SfM scale (paper eq. 2). ``kind`` says what the map measures:

* ``"depth"``: z-depth (distance along the camera's optical axis), larger = farther;
* ``"disparity"``: proportional to 1 / z-depth, larger = nearer (Depth Anything V2's relative models output
  this; DepthAnything/Depth-Anything-V2 #213).

Implementations here: :class:`FileDepth` (user ``<stem>.npy`` maps, ``--depth DIR``) and :class:`ArrayDepth`
(in-memory maps, for tests). The learned model (Depth Anything V2 in Flax NNX) lives in
:mod:`genxd_jax.curation.depth_anything` and is loaded lazily by :func:`load_depth_model`.
"""

from __future__ import annotations

import importlib
import os
from typing import Literal, Protocol, runtime_checkable

import cv2
import numpy as np

DepthKind = Literal["depth", "disparity"]


@runtime_checkable
class DepthModel(Protocol):
    """A monocular relative depth estimator.

    ``kind``: ``"depth"`` or ``"disparity"`` (see the module docstring).
    ``__call__(rgb)``: rgb (H, W, 3) uint8 → (H, W) float32 map at the input's resolution; non-finite or
    non-positive values mark pixels without an estimate.
    """

    kind: Literal["depth", "disparity"]

    def __call__(self, rgb: np.ndarray) -> np.ndarray:  # (H,W,3) uint8 -> (H,W) float32
        ...


class ArrayDepth:
    """Depth maps held in memory, returned in call order (frame i on the i-th call). For tests."""

    def __init__(self, maps, kind: DepthKind = "depth"):
        self.maps = [np.asarray(m, np.float32) for m in maps]
        self.kind = _check_kind(kind)
        self._next = 0

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if self._next >= len(self.maps):
            raise IndexError(f"ArrayDepth has only {len(self.maps)} maps")
        out = self.maps[self._next]
        self._next += 1
        return _resize_map(out, rgb.shape[:2])


class FileDepth:
    """User depth maps ``DIR/<frame stem>.npy``: float32 (H, W) at the input frame's resolution.

    Unlike a :class:`DepthModel`, maps are looked up by frame stem (:meth:`load`), then resized with the frames
    (bilinear). Missing or malformed files raise ``ValueError`` naming the file.
    """

    def __init__(self, folder: str, kind: DepthKind = "depth"):
        if not os.path.isdir(folder):
            raise ValueError(f"--depth: {folder} is not a directory")
        self.folder = folder
        self.kind = _check_kind(kind)

    def load(self, stem: str, input_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
        path = os.path.join(self.folder, stem + ".npy")
        if not os.path.isfile(path):
            raise ValueError(f"--depth: missing depth map {path}")
        arr = np.load(path, allow_pickle=False)
        if arr.ndim != 2 or tuple(arr.shape) != tuple(input_hw):
            raise ValueError(
                f"--depth: {path} has shape {arr.shape}; expected (H, W) = {tuple(input_hw)}, the input frame's"
            )
        return _resize_map(arr.astype(np.float32), out_hw)


def _check_kind(kind: str) -> DepthKind:
    if kind not in ("depth", "disparity"):
        raise ValueError(f"depth kind must be 'depth' or 'disparity', got {kind!r}")
    return kind  # type: ignore[return-value]


def _resize_map(arr: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if tuple(arr.shape[:2]) == tuple(hw):
        return arr.astype(np.float32)
    return cv2.resize(arr.astype(np.float32), (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)


def load_depth_model(spec: str) -> DepthModel:
    """``--depth-model`` → a :class:`DepthModel`. Supported: ``da2:WEIGHTS`` (Depth Anything V2 safetensors)."""
    kind, _, weights = spec.partition(":")
    if kind != "da2" or not weights:
        raise ValueError(f"--depth-model must be 'da2:WEIGHTS', got {spec!r}")
    try:
        module = importlib.import_module("genxd_jax.curation.depth_anything")
    except ImportError as err:
        raise RuntimeError(
            "--depth-model da2: genxd_jax.curation.depth_anything is not available in this installation "
            f"({err}); use --depth DIR with precomputed maps or run without a depth model"
        ) from err
    model = module.load_depth_anything(weights)
    if getattr(model, "kind", None) not in ("depth", "disparity"):
        raise RuntimeError("load_depth_anything returned a model without kind 'depth' or 'disparity'")
    return model
