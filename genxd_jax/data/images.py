"""Frame decoding (PIL) and the square resize / crop / pad with the matching intrinsics update.

Intrinsics are normalised (see :mod:`genxd_jax.data.scene`) with the pixel-edge convention: pixel (row i, col
j) covers [j, j+1] × [i, i+1] in pixels, i.e. its centre is at ((j + 0.5)/W, (i + 0.5)/H) in normalised
coordinates. Under this convention resizing by (sx, sy) maps pixel coordinates exactly to (sx·u, sy·v), and
cropping at offset (ox, oy) maps them to (u − ox, v − oy), which is what :func:`square_image` applies to K.
Unlike GenXD's ``crop_shim`` (genxd-model.md §14.1), the principal point is updated too, so off-centre
principal points stay exact.
"""

from __future__ import annotations

import io
import os

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from genxd_jax.data.errors import BadSceneError
from genxd_jax.data.scene import FrameRef

# A truncated file must fail loudly, never decode to a half-grey image.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def _to_rgb(img: Image.Image) -> np.ndarray:
    """PIL image → (H, W, 3) uint8; alpha is composited on white (as GenXD does for object renders)."""
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        return np.clip(rgba[..., :3] * alpha + 255.0 * (1.0 - alpha) + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_frame(ref: FrameRef, *, min_size: int | None = None) -> np.ndarray:
    """Decodes one frame reference into an (H, W, 3) uint8 array.

    Args:
        ref: a path, encoded image bytes, or a callable returning (H, W, 3) uint8.
        min_size: when given, JPEGs may be decoded at a reduced scale (PIL ``draft``: 1/2, 1/4 or 1/8) as long
            as both sides stay ≥ ``min_size``. Normalised intrinsics are unaffected by this uniform scaling.

    Raises:
        BadSceneError: ``missing_frame`` if the file does not exist, ``corrupt_image`` if it cannot be
        decoded.
    """
    if callable(ref):
        return np.asarray(ref(), dtype=np.uint8)
    if isinstance(ref, (bytes, bytearray, memoryview)):
        stream, label = io.BytesIO(bytes(ref)), "<bytes>"
    else:
        path = os.fspath(ref)
        if not os.path.isfile(path):
            raise BadSceneError("missing_frame", f"no image file {path}")
        stream, label = path, path
    try:
        with Image.open(stream) as img:
            if min_size is not None and img.format == "JPEG":
                img.draft("RGB", (min_size, min_size))
            img.load()
            return _to_rgb(img)
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise BadSceneError("corrupt_image", f"cannot decode {label}: {err}") from err


def image_size(ref: str) -> tuple[int, int]:
    """(height, width) of an image file, from its header only."""
    try:
        with Image.open(ref) as img:
            width, height = img.size
    except FileNotFoundError as err:
        raise BadSceneError("missing_frame", f"no image file {ref}") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise BadSceneError("corrupt_image", f"cannot read header of {ref}: {err}") from err
    return height, width


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    shrinking = height < image.shape[0] or width < image.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp)


def square_image(
    image: np.ndarray, intrinsics: np.ndarray, size: int, mode: str = "crop"
) -> tuple[np.ndarray, np.ndarray]:
    """Makes a frame square (``size`` × ``size``) and updates its normalised intrinsics.

    Args:
        image: (H, W, 3) uint8.
        intrinsics: (3, 3) normalised intrinsics of ``image``.
        size: output side in pixels.
        mode: "crop" rescales so the image covers the square, then centre-crops (paper stages 1–3);
            "pad" zero-pads to a square first (split evenly, extra pixel at bottom/right), then rescales
            (stage 3's padding option).

    Returns:
        (square (size, size, 3) uint8, intrinsics (3, 3) float64 normalised by ``size``).
    """
    h, w = image.shape[:2]
    k = np.asarray(intrinsics, dtype=np.float64)
    fx, fy, cx, cy = k[0, 0] * w, k[1, 1] * h, k[0, 2] * w, k[1, 2] * h  # pixels
    if mode == "crop":
        scale = max(size / h, size / w)
        hs, ws = max(size, round(h * scale)), max(size, round(w * scale))
        sx, sy = ws / w, hs / h
        oy, ox = (hs - size) // 2, (ws - size) // 2
        resized = _resize(image, hs, ws)
        out = resized[oy : oy + size, ox : ox + size]
        fx, fy, cx, cy = fx * sx, fy * sy, cx * sx - ox, cy * sy - oy
    elif mode == "pad":
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        padded = np.zeros((side, side, 3), dtype=image.dtype)
        padded[top : top + h, left : left + w] = image
        out = _resize(padded, size, size)
        s = size / side
        fx, fy, cx, cy = fx * s, fy * s, (cx + left) * s, (cy + top) * s
    else:
        raise ValueError(f"unknown square mode {mode!r}; expected 'crop' or 'pad'")
    k_out = np.array([[fx / size, 0.0, cx / size], [0.0, fy / size, cy / size], [0.0, 0.0, 1.0]])
    return np.ascontiguousarray(out), k_out
