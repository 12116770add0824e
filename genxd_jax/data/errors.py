"""Errors raised by the data pipeline and the fixed vocabulary of bad-input reasons.

A scene that cannot be used raises :class:`BadSceneError` with one of :data:`REASONS`; the pipeline catches
it, counts the reason (exposed as metrics) and skips the scene. When the fraction of skipped examples passes
``config.max_bad_fraction`` the pipeline raises :class:`DataQualityError` so that nothing trains silently on
garbage.
"""

from __future__ import annotations

# Every reason a scene or an example may be skipped for. Keys are stable metric names.
REASONS: dict[str, str] = {
    "corrupt_image": "an image could not be decoded (truncated or corrupt file)",
    "missing_frame": "a frame listed by the camera file has no image on disk",
    "nonfinite_pose": "a camera pose contains NaN or Inf",
    "singular_pose": "a camera rotation is singular or not orthonormal",
    "bad_intrinsics": "a focal length is zero, negative or non-finite, or a principal point is non-finite",
    "too_few_frames": "the scene has fewer frames than the example needs",
    "bad_layout": "the scene's files do not follow the documented layout (missing or malformed camera file)",
}


class BadSceneError(ValueError):
    """A scene (or one of its frames) is unusable; ``reason`` is a key of :data:`REASONS`."""

    def __init__(self, reason: str, message: str):
        if reason not in REASONS:
            raise KeyError(f"unknown bad-input reason {reason!r}; expected one of {sorted(REASONS)}")
        super().__init__(f"[{reason}] {message}")
        self.reason = reason


class DataQualityError(RuntimeError):
    """Raised when the fraction of skipped examples passes the configured bound."""
