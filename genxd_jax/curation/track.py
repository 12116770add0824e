"""Keypoint tracking between adjacent frames (paper §3 step 5; TAPIR there, pyramidal Lucas–Kanade here).

The :class:`Tracker` protocol moves points from one frame to another; :class:`LucasKanade` (OpenCV's
pyramidal LK, a 21×21 window and 3 levels by default) keeps a point only when tracking it back lands within
``fb_px`` of where it started (forward–backward check). Points are (N, 2) float pixels in the COLMAP
convention (top-left pixel centre at (0.5, 0.5)); frames are (H, W, 3) uint8 RGB or (H, W) uint8 grey.
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np


class Tracker(Protocol):
    def __call__(self, frame_a: np.ndarray, frame_b: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """points (N, 2) in frame_a → (positions (N, 2) in frame_b, valid (N,) bool)."""
        ...


def _grey(frame: np.ndarray) -> np.ndarray:
    return frame if frame.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


class LucasKanade:
    """Pyramidal LK with a forward–backward consistency check."""

    def __init__(self, win: int = 21, levels: int = 3, fb_px: float = 0.5):
        self.win, self.levels, self.fb_px = int(win), int(levels), float(fb_px)
        self._criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 0.005)

    def __call__(self, frame_a, frame_b, points):
        a, b = _grey(frame_a), _grey(frame_b)
        if len(points) == 0:
            return np.zeros((0, 2)), np.zeros(0, bool)
        p0 = (np.asarray(points, np.float32) - 0.5).reshape(-1, 1, 2)
        kw = dict(winSize=(self.win, self.win), maxLevel=self.levels - 1, criteria=self._criteria)
        p1, st1, _ = cv2.calcOpticalFlowPyrLK(a, b, p0, None, **kw)
        p0r, st2, _ = cv2.calcOpticalFlowPyrLK(b, a, p1, None, **kw)
        fb = np.linalg.norm((p0r - p0).reshape(-1, 2), axis=1)
        h, w = b.shape
        out = p1.reshape(-1, 2).astype(np.float64)
        valid = (
            (st1.ravel() == 1) & (st2.ravel() == 1) & (fb < self.fb_px)
            & (out[:, 0] >= 0) & (out[:, 0] <= w - 1) & (out[:, 1] >= 0) & (out[:, 1] <= h - 1)
        )
        return out + 0.5, valid


def detect_keypoints(frame: np.ndarray, mask: np.ndarray | None, max_points: int, min_distance: int) -> np.ndarray:
    """Shi–Tomasi corners of a frame within a boolean mask → (N, 2) COLMAP-convention pixels."""
    grey = _grey(frame)
    m = None if mask is None else mask.astype(np.uint8) * 255
    if m is not None and not m.any():
        return np.zeros((0, 2))
    pts = cv2.goodFeaturesToTrack(grey, maxCorners=int(max_points), qualityLevel=0.005,
                                  minDistance=int(min_distance), mask=m, blockSize=5)
    return np.zeros((0, 2)) if pts is None else pts.reshape(-1, 2).astype(np.float64) + 0.5


def track_objects(frames, masks: np.ndarray, tracker: Tracker, *, max_points: int, min_distance: int,
                  erode_px: int) -> dict[int, list[tuple[int, np.ndarray, np.ndarray]]]:
    """Per object instance k > 0 of ``masks`` (F, H, W): keypoints in frame i's (eroded) mask of k tracked to
    frame i+1 → {k: [(i, points_i (N, 2), points_{i+1} (N, 2)), ...]} (valid tracks only)."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * erode_px + 1, 2 * erode_px + 1))
    out: dict[int, list] = {}
    for i in range(len(frames) - 1):
        for k in np.unique(masks[i]):
            if k == 0:
                continue
            region = cv2.erode((masks[i] == k).astype(np.uint8), kernel) if erode_px > 0 else masks[i] == k
            pts = detect_keypoints(frames[i], region > 0, max_points, min_distance)
            nxt, valid = tracker(frames[i], frames[i + 1], pts)
            out.setdefault(int(k), []).append((i, pts[valid], nxt[valid]))
    return out
