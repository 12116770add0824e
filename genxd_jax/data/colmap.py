"""Reader of COLMAP sparse models in the documented binary format (cameras.bin, images.bin).

Format (https://colmap.github.io/format.html#binary-file-format), little endian:

* ``cameras.bin``: uint64 count; per camera: uint32 camera_id, int32 model_id, uint64 width, uint64 height,
  float64 params[n(model)].
* ``images.bin``: uint64 count; per image: uint32 image_id, float64 qw qx qy qz, float64 tx ty tz
  (world-to-camera,
  OpenCV camera axes), uint32 camera_id, name (NUL-terminated), uint64 num_points2D, then num_points2D ×
  (float64 x, float64 y, int64 point3D_id).

``points3D.bin`` is not needed for cameras and is not read. Lens distortion parameters are ignored: GenXD
conditions on pinhole rays only (the CamVid-30K models are SIMPLE_PINHOLE / PINHOLE / SIMPLE_RADIAL with tiny
k).
"""

from __future__ import annotations

import dataclasses
import os
import struct

import numpy as np

from genxd_jax.data.cameras import normalised_intrinsics, qvec_to_rotmat, rt_to_matrix
from genxd_jax.data.errors import BadSceneError

# model_id → (name, number of params, how to read fx, fy, cx, cy from params).
_SINGLE_F = lambda p: (p[0], p[0], p[1], p[2])  # noqa: E731
_DUAL_F = lambda p: (p[0], p[1], p[2], p[3])  # noqa: E731
CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", 3, _SINGLE_F),
    1: ("PINHOLE", 4, _DUAL_F),
    2: ("SIMPLE_RADIAL", 4, _SINGLE_F),
    3: ("RADIAL", 5, _SINGLE_F),
    4: ("OPENCV", 8, _DUAL_F),
    5: ("OPENCV_FISHEYE", 8, _DUAL_F),
    6: ("FULL_OPENCV", 12, _DUAL_F),
    7: ("FOV", 5, _DUAL_F),
    8: ("SIMPLE_RADIAL_FISHEYE", 4, _SINGLE_F),
    9: ("RADIAL_FISHEYE", 5, _SINGLE_F),
    10: ("THIN_PRISM_FISHEYE", 12, _DUAL_F),
}


@dataclasses.dataclass(frozen=True)
class ColmapCamera:
    model: str
    width: int
    height: int
    params: np.ndarray  # (n,) float64, pixels

    def normalised_intrinsics(self) -> np.ndarray:
        """(3, 3) intrinsics normalised by (width, height)."""
        fx, fy, cx, cy = CAMERA_MODELS[_MODEL_IDS[self.model]][2](self.params)
        return normalised_intrinsics(fx, fy, cx, cy, self.width, self.height)


_MODEL_IDS = {name: mid for mid, (name, _, _) in CAMERA_MODELS.items()}


@dataclasses.dataclass(frozen=True)
class ColmapImage:
    name: str
    camera_id: int
    w2c: np.ndarray  # (4, 4) float64, OpenCV axes


class _Cursor:
    def __init__(self, data: bytes, path: str):
        self.data, self.pos, self.path = data, 0, path

    def read(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise BadSceneError("bad_layout", f"{self.path} is truncated at byte {self.pos}")
        out = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return out

    def read_cstring(self) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise BadSceneError("bad_layout", f"{self.path}: unterminated image name")
        out = self.data[self.pos : end].decode("utf-8")
        self.pos = end + 1
        return out


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError as err:
        raise BadSceneError("bad_layout", f"missing COLMAP file {path}") from err


def read_cameras_bin(path: str) -> dict[int, ColmapCamera]:
    """Parses ``cameras.bin`` → {camera_id: ColmapCamera}."""
    cur = _Cursor(_read_bytes(path), path)
    (count,) = cur.read("<Q")
    cameras = {}
    for _ in range(count):
        camera_id, model_id, width, height = cur.read("<IiQQ")
        if model_id not in CAMERA_MODELS:
            raise BadSceneError("bad_layout", f"{path}: unknown COLMAP camera model id {model_id}")
        name, n_params, _ = CAMERA_MODELS[model_id]
        params = np.array(cur.read(f"<{n_params}d"), dtype=np.float64)
        cameras[camera_id] = ColmapCamera(name, int(width), int(height), params)
    return cameras


def read_images_bin(path: str) -> list[ColmapImage]:
    """Parses ``images.bin`` → registered images (pose + camera id + name), in file order."""
    cur = _Cursor(_read_bytes(path), path)
    (count,) = cur.read("<Q")
    images = []
    for _ in range(count):
        values = cur.read("<I7dI")
        qvec, tvec, camera_id = np.array(values[1:5]), np.array(values[5:8]), values[8]
        name = cur.read_cstring()
        (n_points,) = cur.read("<Q")
        cur.pos += n_points * 24
        if cur.pos > len(cur.data):
            raise BadSceneError("bad_layout", f"{path} is truncated in the points of {name}")
        w2c = rt_to_matrix(qvec_to_rotmat(qvec), tvec)
        images.append(ColmapImage(name, int(camera_id), w2c))
    return images


def find_model_dir(root: str) -> str:
    """The sparse model folder of a clip: ``root/0`` (CamVid-30K), ``root/sparse/0`` (MVImgNet) or
    ``root/sparse``."""
    for sub in ("0", os.path.join("sparse", "0"), "sparse", "."):
        cand = os.path.join(root, sub)
        if os.path.isfile(os.path.join(cand, "cameras.bin")) and os.path.isfile(
            os.path.join(cand, "images.bin")
        ):
            return cand
    raise BadSceneError(
        "bad_layout", f"no COLMAP model (0/, sparse/0/ or sparse/ with cameras.bin) under {root}"
    )


def read_colmap_model(model_dir: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Reads a sparse model: (names sorted, c2w (N, 4, 4) OpenCV, intrinsics (N, 3, 3) normalised)."""
    cameras = read_cameras_bin(os.path.join(model_dir, "cameras.bin"))
    images = sorted(read_images_bin(os.path.join(model_dir, "images.bin")), key=lambda im: im.name)
    if not images:
        raise BadSceneError("too_few_frames", f"{model_dir}: no registered images")
    missing = {im.camera_id for im in images} - set(cameras)
    if missing:
        raise BadSceneError("bad_layout", f"{model_dir}: images refer to unknown cameras {sorted(missing)}")
    w2c = np.stack([im.w2c for im in images])
    # w2c comes from a normalised quaternion, so its inverse is the rigid inverse.
    c2w = np.zeros_like(w2c)
    c2w[:, :3, :3] = np.transpose(w2c[:, :3, :3], (0, 2, 1))
    c2w[:, :3, 3] = -np.einsum("nij,nj->ni", c2w[:, :3, :3], w2c[:, :3, 3])
    c2w[:, 3, 3] = 1.0
    intr = np.stack([cameras[im.camera_id].normalised_intrinsics() for im in images])
    return [im.name for im in images], c2w, intr
