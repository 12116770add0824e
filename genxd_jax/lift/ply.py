"""Reading and writing Gaussians in the standard 3D-GS ``.ply`` layout (graphdeco-inria ``save_ply``).

Binary little-endian PLY 1.0 with one ``vertex`` element of float properties

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 f_rest_0 … f_rest_44 opacity scale_0 scale_1 scale_2 rot_0 … rot_3

holding the values before activation (opacity logit, log scale, quaternion w-first). ``f_rest`` is
CHANNEL-MAJOR: f_rest_0..14 are the red coefficients 1..15, then green, then blue; the in-memory ``sh_rest``
(N, 15, 3) is coefficient-major, so the two are transposes of each other. Normals are written as zeros and
ignored on reading. SIBR, SuperSplat and the common web splat viewers open these files.

Files are parsed with NumPy only (no pickle). A round trip ``load_ply(save_ply(g))`` is bit-exact for the
active slots of float32 Gaussians.
"""

from __future__ import annotations

import os
import pathlib
import tempfile

import jax.numpy as jnp
import numpy as np

from genxd_jax.lift.gaussians import Gaussians

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip

_REQUIRED = (
    ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    + [f"scale_{i}" for i in range(3)]
    + [f"rot_{i}" for i in range(4)]
)
# Number of f_rest properties for SH degrees 0..3.
_REST_COUNTS = {0: 0, 9: 1, 24: 2, 45: 3}


class PlyError(ValueError):
    """A .ply file that is not a readable 3D-GS Gaussian file (the message names the file and the field)."""


def property_names(sh_rest_coeffs: int = 15) -> list[str]:
    """The property names, in file order, for ``sh_rest_coeffs`` coefficients per channel (15 = degree 3)."""
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(3 * sh_rest_coeffs)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def _read_header(f, path):
    first = f.readline()
    if first.strip() != b"ply":
        raise PlyError(f"{path}: not a PLY file (first line {first[:40]!r}, expected 'ply')")
    fmt = None
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    while True:
        line = f.readline()
        if not line:
            raise PlyError(f"{path}: PLY header has no 'end_header'")
        try:
            text = line.decode("ascii").strip()
        except UnicodeDecodeError as e:
            raise PlyError(f"{path}: PLY header is not ASCII ({e})") from None
        if text == "end_header":
            break
        parts = text.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "format":
            fmt = parts[1:]
        elif parts[0] == "element":
            if len(parts) != 3:
                raise PlyError(f"{path}: malformed header line {text!r}")
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property":
            if not elements:
                raise PlyError(f"{path}: property before any element: {text!r}")
            if parts[1] == "list":
                raise PlyError(
                    f"{path}: element '{elements[-1][0]}' has list property {parts[-1]!r}; "
                    "3D-GS files have scalar properties only"
                )
            if len(parts) != 3 or parts[1] not in _PLY_TYPES:
                raise PlyError(f"{path}: unsupported property line {text!r}")
            elements[-1][2].append((parts[2], _PLY_TYPES[parts[1]]))
        else:
            raise PlyError(f"{path}: unexpected header line {text!r}")
    if fmt is None:
        raise PlyError(f"{path}: PLY header has no 'format' line")
    if fmt[0] != "binary_little_endian":
        raise PlyError(f"{path}: PLY format is {fmt[0]!r}; only 'binary_little_endian' 3D-GS files are supported")
    return elements


def load_ply(path, capacity: int | None = None) -> Gaussians:
    """Reads a 3D-GS ``.ply`` into float32 :class:`Gaussians` (all slots active unless ``capacity`` pads).

    Files with SH degree 0..2 (0, 9 or 24 ``f_rest`` properties) are accepted; the missing coefficients are
    zero. Extra properties are ignored.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        elements = _read_header(f, path)
        data = None
        for name, count, props in elements:
            dtype = np.dtype([(p, "<" + t) for p, t in props])
            if name == "vertex":
                raw = f.read(dtype.itemsize * count)
                if len(raw) != dtype.itemsize * count:
                    raise PlyError(
                        f"{path}: truncated: vertex data has {len(raw)} bytes, header promises "
                        f"{count} × {dtype.itemsize}"
                    )
                data = np.frombuffer(raw, dtype=dtype, count=count)
                break
            f.seek(dtype.itemsize * count, os.SEEK_CUR)
    if data is None:
        raise PlyError(f"{path}: no 'vertex' element")
    names = set(data.dtype.names)
    for prop in _REQUIRED:
        if prop not in names:
            raise PlyError(f"{path}: vertex property {prop!r} is missing (not a 3D-GS Gaussian file?)")
    rest_names = sorted((n for n in names if n.startswith("f_rest_")), key=lambda s: int(s[7:]))
    if len(rest_names) not in _REST_COUNTS or rest_names != [f"f_rest_{i}" for i in range(len(rest_names))]:
        raise PlyError(
            f"{path}: f_rest properties must be f_rest_0..f_rest_{{8, 23, 44}} (SH degree 1..3) or absent, "
            f"found {len(rest_names)}"
        )
    n = data.shape[0]

    def cols(props):
        return np.stack([np.asarray(data[p], np.float32) for p in props], axis=-1).reshape(n, len(props))

    k = len(rest_names) // 3
    sh_rest = np.zeros((n, 15, 3), np.float32)
    if k:
        # File: channel-major (c·k + j); memory: (j, c).
        sh_rest[:, :k, :] = cols(rest_names).reshape(n, 3, k).transpose(0, 2, 1)
    arrays = dict(
        means=cols(["x", "y", "z"]),
        quats=cols([f"rot_{i}" for i in range(4)]),
        log_scales=cols([f"scale_{i}" for i in range(3)]),
        opacity_logits=cols(["opacity"])[:, 0],
        sh_dc=cols(["f_dc_0", "f_dc_1", "f_dc_2"]),
        sh_rest=sh_rest,
    )
    for name, arr in arrays.items():
        if not np.all(np.isfinite(arr)):
            raise PlyError(f"{path}: non-finite values in the properties of {name}")
    g = Gaussians(**{k_: jnp.asarray(v) for k_, v in arrays.items()}, active=jnp.ones((n,), bool))
    if capacity is not None:
        g = g.pad_to(capacity)
    return g


def save_ply(g: Gaussians, path) -> pathlib.Path:
    """Writes the active slots of ``g`` as a degree-3 3D-GS ``.ply`` (float32), atomically.

    The file is written to a temporary name in the same folder and renamed, so an interrupted write never
    leaves a partial file. Parent folders are created. Returns the path.
    """
    path = pathlib.Path(path)
    g.validate()
    active = np.asarray(g.active, bool)
    n = int(active.sum())

    def pick(x):
        return np.asarray(x, np.float32)[active]

    names = property_names(15)
    rec = np.zeros((n,), dtype=np.dtype([(p, "<f4") for p in names]))
    for i, p in enumerate(["x", "y", "z"]):
        rec[p] = pick(g.means)[:, i]
    for i in range(3):
        rec[f"f_dc_{i}"] = pick(g.sh_dc)[:, i]
    rest = pick(g.sh_rest).transpose(0, 2, 1).reshape(n, 45)  # channel-major
    for i in range(45):
        rec[f"f_rest_{i}"] = rest[:, i]
    rec["opacity"] = pick(g.opacity_logits)
    for i in range(3):
        rec[f"scale_{i}"] = pick(g.log_scales)[:, i]
    for i in range(4):
        rec[f"rot_{i}"] = pick(g.quats)[:, i]
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\n"
    header += "".join(f"property float {p}\n" for p in names) + "end_header\n"

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(rec.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
