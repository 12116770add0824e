"""The standard 3D-GS .ply layout: bit-exact round trip, hand-written files, lower SH degrees, clear errors."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from genxd_jax.lift import Gaussians, load_ply, save_ply
from genxd_jax.lift.ply import PlyError, property_names


def _random_gaussians(rng, n, capacity):
    g = Gaussians.create(rng.normal(size=(n, 3)), colors_rgb=rng.uniform(size=(n, 3)), scales=0.1, capacity=capacity)
    f32 = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)  # noqa: E731
    return g.replace(
        means=f32(capacity, 3), quats=f32(capacity, 4), log_scales=f32(capacity, 3),
        opacity_logits=f32(capacity), sh_dc=f32(capacity, 3), sh_rest=f32(capacity, 15, 3),
        active=jnp.asarray(rng.uniform(size=capacity) < 0.7),
    )  # fmt: skip


def _bits(x):
    return np.asarray(x, np.float32).view(np.uint32)


def test_round_trip_is_bit_exact_and_skips_inactive(tmp_path):
    g = _random_gaussians(np.random.default_rng(0), 40, 50)
    path = save_ply(g, tmp_path / "sub" / "point_cloud.ply")
    assert path.exists() and sorted(os.listdir(path.parent)) == ["point_cloud.ply"]  # no temp file left
    back = load_ply(path)
    active = np.asarray(g.active)
    assert back.capacity == int(active.sum()) and bool(back.active.all())
    for f in ("means", "quats", "log_scales", "opacity_logits", "sh_dc", "sh_rest"):
        np.testing.assert_array_equal(_bits(getattr(back, f)), _bits(np.asarray(getattr(g, f))[active]), err_msg=f)
    padded = load_ply(path, capacity=64)
    assert padded.capacity == 64 and int(padded.num_active) == back.capacity
    save_ply(back, tmp_path / "again.ply")
    assert (tmp_path / "again.ply").read_bytes() == path.read_bytes()


def _write_by_hand(path, rec, fmt="binary_little_endian"):
    header = f"ply\nformat {fmt} 1.0\ncomment written by hand\nelement vertex {len(rec)}\n"
    header += "".join(f"property float {p}\n" for p in rec.dtype.names) + "end_header\n"
    path.write_bytes(header.encode() + rec.tobytes())


def test_hand_written_file_layout(tmp_path):
    rng = np.random.default_rng(1)
    n = 5
    rec = np.zeros(n, dtype=[(p, "<f4") for p in property_names(15)])
    for p in rec.dtype.names:
        rec[p] = rng.normal(size=n)
    _write_by_hand(tmp_path / "hand.ply", rec)
    g = load_ply(tmp_path / "hand.ply")
    np.testing.assert_array_equal(g.means, np.stack([rec["x"], rec["y"], rec["z"]], -1))
    np.testing.assert_array_equal(g.quats[:, 0], rec["rot_0"])  # w first
    np.testing.assert_array_equal(g.log_scales[:, 2], rec["scale_2"])
    np.testing.assert_array_equal(g.opacity_logits, rec["opacity"])
    np.testing.assert_array_equal(g.sh_dc[:, 1], rec["f_dc_1"])
    # f_rest is channel-major: f_rest_{c·15 + k} is coefficient k+1 of channel c.
    for c in range(3):
        for k in range(15):
            np.testing.assert_array_equal(g.sh_rest[:, k, c], rec[f"f_rest_{c * 15 + k}"])


def test_lower_sh_degree_file_is_padded(tmp_path):
    rng = np.random.default_rng(2)
    rec = np.zeros(3, dtype=[(p, "<f4") for p in property_names(3)])  # degree 1: f_rest_0..8
    for p in rec.dtype.names:
        rec[p] = rng.normal(size=3)
    _write_by_hand(tmp_path / "deg1.ply", rec)
    g = load_ply(tmp_path / "deg1.ply")
    np.testing.assert_array_equal(g.sh_rest[:, 1, 2], rec["f_rest_7"])  # blue coefficient 2 = 2·3 + 1
    assert np.all(np.asarray(g.sh_rest)[:, 3:] == 0)
    no_rest = [p for p in property_names(0)]
    rec0 = np.zeros(2, dtype=[(p, "<f4") for p in no_rest])
    _write_by_hand(tmp_path / "deg0.ply", rec0)
    assert np.all(np.asarray(load_ply(tmp_path / "deg0.ply").sh_rest) == 0)


def test_bad_files_give_clear_errors(tmp_path):
    rec = np.zeros(2, dtype=[(p, "<f4") for p in property_names(15)])
    _write_by_hand(tmp_path / "ascii.ply", rec, fmt="ascii")
    with pytest.raises(PlyError, match=r"ascii\.ply.*'ascii'"):
        load_ply(tmp_path / "ascii.ply")
    (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a ply")
    with pytest.raises(PlyError, match=r"img\.png: not a PLY"):
        load_ply(tmp_path / "img.png")
    missing = np.zeros(2, dtype=[(p, "<f4") for p in property_names(15) if p != "scale_1"])
    _write_by_hand(tmp_path / "missing.ply", missing)
    with pytest.raises(PlyError, match=r"missing\.ply: vertex property 'scale_1' is missing"):
        load_ply(tmp_path / "missing.ply")
    _write_by_hand(tmp_path / "trunc.ply", rec)
    data = (tmp_path / "trunc.ply").read_bytes()
    (tmp_path / "trunc.ply").write_bytes(data[:-10])
    with pytest.raises(PlyError, match=r"trunc\.ply: truncated"):
        load_ply(tmp_path / "trunc.ply")
    odd = np.zeros(2, dtype=[(p, "<f4") for p in property_names(15) if p != "f_rest_44"])
    _write_by_hand(tmp_path / "odd.ply", odd)
    with pytest.raises(PlyError, match=r"odd\.ply: f_rest"):
        load_ply(tmp_path / "odd.ply")
    with pytest.raises(FileNotFoundError, match="nope.ply"):
        load_ply(tmp_path / "nope.ply")


def test_gaussians_create_reference_initialisation():
    from genxd_jax.lift.sh import SH_C0

    grid = np.stack(np.meshgrid(*[np.arange(4) * 0.5] * 3, indexing="ij"), -1).reshape(-1, 3)
    colors = np.random.default_rng(3).uniform(size=(64, 3))
    g = Gaussians.create(grid, colors_rgb=colors, capacity=80)
    assert g.capacity == 80 and int(g.num_active) == 64 and not bool(g.active[64:].any())
    # Every grid point's 3 nearest neighbours are 0.5 away: scale = √(mean squared distance) = 0.5.
    np.testing.assert_allclose(g.scales()[:64], 0.5, rtol=1e-6)
    np.testing.assert_allclose(g.opacities()[:64], 0.1, rtol=1e-6)
    np.testing.assert_allclose(SH_C0 * np.asarray(g.sh_dc[:64]) + 0.5, colors, atol=1e-6)
    np.testing.assert_array_equal(g.rotations()[:64], np.tile([1.0, 0, 0, 0], (64, 1)))
    np.testing.assert_allclose(g.covariances()[0], 0.25 * np.eye(3), atol=1e-7)
    assert g.compact().capacity == 64 and g.pad_to(100).capacity == 100
    with pytest.raises(ValueError, match="capacity 10 is smaller"):
        Gaussians.create(grid, capacity=10)
    with pytest.raises(ValueError, match=r"means must have shape \(M, 3\)"):
        Gaussians.create(grid[:, :2])
