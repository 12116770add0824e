"""Segmentation of potentially moving objects (paper §3 step 1; Mask2Former + DEVA there).

Masks are (F, H, W) uint16 instance ids: 0 = background (static), k > 0 = object instance k, the same k in
every frame. Sources:

* user masks, ``--masks DIR`` with ``DIR/<frame stem>.png`` at the input resolution (:func:`load_masks`,
  resized with the frames by nearest neighbour);
* :class:`MotionSegmenter` (the default): points that break the static scene's epipolar geometry;
* :class:`NoSegmenter` (``--segmenter none``): everything static, no object.

:class:`MotionSegmenter`: for each frame i, corners on a ``grid_step`` grid are tracked (LK, forward–backward
checked) to frame i ± ``gap``; a fundamental matrix is fitted by RANSAC to the tracks (the static scene is the
dominant motion); tracks whose Sampson distance exceeds ``sampson_px`` are outliers. Outliers are clustered by
connected components of discs around them; a component with at least ``min_points`` outliers that make up a
large share of the tracks in its region becomes an object whose mask is the convex hull of its outliers,
dilated. Instances are linked across frames greedily by mask IoU (with up to 3 frames of look-back), and
instances seen in fewer than ``min_track_frac`` of the frames are dropped. Its blind spot: an object moving
along the epipolar lines (e.g. straight towards a camera that translates forward) is indistinguishable from
static scene at another depth; like the paper, a false positive is preferred (dilated hulls).
"""

from __future__ import annotations

import os
from typing import Protocol

import cv2
import numpy as np

from genxd_jax.curation.track import LucasKanade, detect_keypoints


class Segmenter(Protocol):
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """frames (F, H, W, 3) uint8 → instance masks (F, H, W) uint16."""
        ...


class NoSegmenter:
    def __call__(self, frames):
        return np.zeros(np.asarray(frames).shape[:3], np.uint16)


def load_masks(folder: str, stems: list[str], input_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """User masks ``folder/<stem>.png`` (0 = background, k = instance k) → (F, H, W) uint16 at ``out_hw``."""
    if not os.path.isdir(folder):
        raise ValueError(f"--masks: {folder} is not a directory")
    out = np.zeros((len(stems), *out_hw), np.uint16)
    for n, stem in enumerate(stems):
        path = os.path.join(folder, stem + ".png")
        if not os.path.isfile(path):
            raise ValueError(f"--masks: missing mask {path}")
        mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if mask is None:
            raise ValueError(f"--masks: unreadable mask {path}")
        if mask.ndim == 3:
            mask = mask[..., 0]
        if mask.shape != tuple(input_hw):
            raise ValueError(f"--masks: {path} is {mask.shape[1]}×{mask.shape[0]}, the frame is "
                             f"{input_hw[1]}×{input_hw[0]}")
        out[n] = cv2.resize(mask.astype(np.uint16), (out_hw[1], out_hw[0]), interpolation=cv2.INTER_NEAREST)
    return out


def sampson_distance(fmat: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """sqrt of the Sampson error (px) of correspondences (N, 2) ↔ (N, 2) under a fundamental matrix."""
    x0 = np.concatenate([p0, np.ones((len(p0), 1))], 1)
    x1 = np.concatenate([p1, np.ones((len(p1), 1))], 1)
    fx0, ftx1 = x0 @ fmat.T, x1 @ fmat
    num = np.sum(x1 * fx0, 1) ** 2
    den = fx0[:, 0] ** 2 + fx0[:, 1] ** 2 + ftx1[:, 0] ** 2 + ftx1[:, 1] ** 2
    return np.sqrt(num / np.maximum(den, 1e-12))


class MotionSegmenter:
    """The classical default (see the module docstring); settings from ``cfg.seg`` of the curation config."""

    def __init__(self, cfg, tracker=None):
        self.cfg = cfg
        self.tracker = tracker or LucasKanade(fb_px=1.0)

    def outliers(self, frames: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(tracked points (N, 2) of frame i, outlier flags (N,)) against frame i ± gap."""
        f = len(frames)
        gap = min(int(self.cfg.gap), f - 1)
        j = i + gap if i + gap < f else i - gap
        h, w = frames.shape[1:3]
        pts = detect_keypoints(frames[i], None, (h * w) // (self.cfg.grid_step**2), self.cfg.grid_step)
        nxt, valid = self.tracker(frames[i], frames[j], pts)
        pts, nxt = pts[valid], nxt[valid]
        if len(pts) < 16:
            return pts, np.zeros(len(pts), bool)
        fmat, _ = cv2.findFundamentalMat(pts, nxt, cv2.FM_RANSAC, 0.5, 0.999, 2000)
        if fmat is None or fmat.shape != (3, 3):
            return pts, np.zeros(len(pts), bool)
        return pts, sampson_distance(fmat, pts, nxt) > self.cfg.sampson_px

    def _components(self, pts, out, hw) -> list[np.ndarray]:
        h, w = hw
        radius = max(2, int(round(self.cfg.radius_frac * min(h, w))))
        canvas = np.zeros((h, w), np.uint8)
        for x, y in pts[out]:
            cv2.circle(canvas, (int(x), int(y)), radius, 1, -1)
        n, labels = cv2.connectedComponents(canvas)
        masks = []
        kernel = cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (2 * self.cfg.dilate_px + 1, 2 * self.cfg.dilate_px + 1)
        )
        xi = np.clip(pts[:, 0].astype(int), 0, w - 1)
        yi = np.clip(pts[:, 1].astype(int), 0, h - 1)
        comp_of_pt = labels[yi, xi]
        for c in range(1, n):
            members = comp_of_pt == c
            n_out = int(np.sum(members & out))
            if n_out < self.cfg.min_points or n_out < 0.3 * np.sum(members):
                continue
            hull = cv2.convexHull(pts[members & out].astype(np.float32)).astype(np.int32)
            mask = np.zeros((h, w), np.uint8)
            cv2.fillConvexPoly(mask, hull, 1)
            masks.append(cv2.dilate(mask, kernel) > 0)
        return masks

    def __call__(self, frames):
        frames = np.asarray(frames)
        f, h, w = frames.shape[:3]
        per_frame = []
        for i in range(f):
            pts, out = self.outliers(frames, i)
            per_frame.append(self._components(pts, out, (h, w)))
        return link_instances(per_frame, (f, h, w), min_frames=max(2, int(np.ceil(self.cfg.min_track_frac * f))))


def link_instances(per_frame: list[list[np.ndarray]], shape, *, min_frames: int, iou: float = 0.2,
                   lookback: int = 3) -> np.ndarray:
    """Greedy IoU linking of per-frame boolean masks into instance ids (F, H, W) uint16."""
    ids = np.zeros(shape, np.uint16)
    last: dict[int, tuple[int, np.ndarray]] = {}  # id → (frame, mask) of its latest appearance
    next_id = 1
    for t, comps in enumerate(per_frame):
        taken = set()
        for mask in sorted(comps, key=lambda m: -m.sum()):
            best, best_iou = None, iou
            for k, (t_prev, prev) in last.items():
                if k in taken or t - t_prev > lookback:
                    continue
                value = np.logical_and(mask, prev).sum() / max(1, np.logical_or(mask, prev).sum())
                if value > best_iou:
                    best, best_iou = k, value
            if best is None:
                best, next_id = next_id, next_id + 1
            taken.add(best)
            last[best] = (t, mask)
            ids[t][mask & (ids[t] == 0)] = best
    counts = {k: int(np.sum(np.any(ids == k, axis=(1, 2)))) for k in range(1, next_id)}
    keep = sorted(k for k, c in counts.items() if c >= min_frames)
    out = np.zeros_like(ids)
    for new, k in enumerate(keep, start=1):
        out[ids == k] = new
    return out
