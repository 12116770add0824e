"""Clip discovery, frame decoding and sampling, and resizing (paper §3: shorter side 256).

INPUT conventions (``python -m genxd_jax.curate INPUT OUT_DIR``):

* a video file → one clip named after the file's stem;
* a folder of images (sorted by name) → one clip named after the folder;
* a folder of videos and/or image folders → a batch, one clip each.

Frames keep their stems (``images/<stem>.jpg``) so that ``--masks``/``--depth`` files (``<stem>.png`` /
``<stem>.npy``) line up; video frames are named ``00000``, ``00001``, … in decode order. Sampling: every
``stride``-th frame, then the first ``max_frames`` (0 = all).
"""

from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np

VIDEO_EXTS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ClipError(RuntimeError):
    """A clip that cannot be read (the batch records it as rejected with this message)."""


@dataclasses.dataclass(frozen=True)
class ClipSource:
    name: str
    path: str
    kind: str  # "video" or "frames"


def _is_video(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(VIDEO_EXTS)


def _images_in(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTS) and not n.startswith("."))


def discover_clips(input_path: str) -> list[ClipSource]:
    """The clips of INPUT (see the module docstring), sorted by name; raises ValueError when there is none."""
    input_path = os.path.normpath(input_path)
    if os.path.isfile(input_path):
        if not input_path.lower().endswith(VIDEO_EXTS):
            raise ValueError(f"{input_path}: not a video ({', '.join(VIDEO_EXTS)})")
        return [ClipSource(os.path.splitext(os.path.basename(input_path))[0], input_path, "video")]
    if not os.path.isdir(input_path):
        raise ValueError(f"{input_path} does not exist")
    if _images_in(input_path):
        return [ClipSource(os.path.basename(input_path), input_path, "frames")]
    clips = []
    for entry in sorted(os.listdir(input_path)):
        path = os.path.join(input_path, entry)
        if entry.startswith("."):
            continue
        if os.path.isdir(path):
            clips.append(ClipSource(entry, path, "frames"))
        elif path.lower().endswith(VIDEO_EXTS):
            clips.append(ClipSource(os.path.splitext(entry)[0], path, "video"))
    if not clips:
        raise ValueError(f"{input_path}: no images, videos or clip folders found")
    names = [c.name for c in clips]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{input_path}: several inputs map to the clip names {dupes}")
    return clips


def output_size(hw: tuple[int, int], size: int) -> tuple[int, int]:
    """(H, W) with the shorter side ``size`` and the aspect ratio kept (``size`` ≤ 0: unchanged)."""
    h, w = hw
    if size <= 0:
        return h, w
    scale = size / min(h, w)
    return max(1, int(round(h * scale))), max(1, int(round(w * scale)))


def read_clip(source: ClipSource, *, stride: int = 1, max_frames: int = 0) -> tuple[list[str], np.ndarray]:
    """Decodes and samples a clip → (stems, frames (F, H, W, 3) uint8 RGB at the input resolution)."""
    if stride < 1:
        raise ValueError(f"--stride must be ≥ 1, got {stride}")
    if source.kind == "video":
        stems, frames = _read_video(source.path, stride, max_frames)
    else:
        names = _images_in(source.path)
        if not names:
            raise ClipError(f"{source.path}: no images")
        names = names[::stride]
        names = names[:max_frames] if max_frames > 0 else names
        stems, frames = [], []
        for name in names:
            img = cv2.imread(os.path.join(source.path, name), cv2.IMREAD_COLOR)
            if img is None:
                raise ClipError(f"unreadable image {os.path.join(source.path, name)}")
            if frames and img.shape != frames[0].shape:
                raise ClipError(f"{os.path.join(source.path, name)} is {img.shape[1]}×{img.shape[0]}, the first "
                                f"frame {frames[0].shape[1]}×{frames[0].shape[0]}")
            stems.append(os.path.splitext(name)[0])
            frames.append(img[..., ::-1])
        if len(set(stems)) != len(stems):
            raise ClipError(f"{source.path}: several images share a stem")
    if not frames:
        raise ClipError(f"{source.path}: no frames decoded")
    return stems, np.ascontiguousarray(np.stack(frames))


def _read_video(path: str, stride: int, max_frames: int) -> tuple[list[str], list[np.ndarray]]:
    import imageio_ffmpeg

    stems, frames = [], []
    try:
        reader = imageio_ffmpeg.read_frames(path)
        meta = next(reader)
        w, h = meta["size"]
        for index, raw in enumerate(reader):
            if index % stride:
                continue
            frames.append(np.frombuffer(raw, np.uint8).reshape(h, w, 3).copy())
            stems.append(f"{index:05d}")
            if max_frames > 0 and len(frames) >= max_frames:
                break
        reader.close()
    except (OSError, RuntimeError, StopIteration, ValueError, KeyError) as err:
        raise ClipError(f"unreadable video {path}: {str(err).strip().splitlines()[0] if str(err) else err!r}") from err
    return stems, frames


def resize_frames(frames: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(F, H0, W0, 3) → (F, H, W, 3): area interpolation when shrinking, cubic when enlarging."""
    if frames.shape[1:3] == tuple(hw):
        return frames
    interp = cv2.INTER_AREA if hw[0] < frames.shape[1] else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (hw[1], hw[0]), interpolation=interp) for f in frames])
