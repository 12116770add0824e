"""Camera conversions, pose normalisation and square resize/crop/pad with intrinsics updates."""

import numpy as np
import pytest

from genxd_jax.data import BadSceneError
from genxd_jax.data.cameras import normalise_poses, project, qvec_to_rotmat, rotmat_to_qvec
from genxd_jax.data.fixtures import random_cameras
from genxd_jax.data.images import square_image


def test_quaternion_round_trip():
    rng = np.random.default_rng(1)
    c2w, _ = random_cameras(rng, 20)
    for rot in c2w[:, :3, :3]:
        np.testing.assert_allclose(qvec_to_rotmat(rotmat_to_qvec(rot)), rot, atol=1e-12)
    # COLMAP's documented example: 90° about z is (w, x, y, z) = (cos 45°, 0, 0, sin 45°)
    np.testing.assert_allclose(
        qvec_to_rotmat([np.sqrt(0.5), 0, 0, np.sqrt(0.5)]), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12
    )
    with pytest.raises(BadSceneError, match="singular_pose"):
        qvec_to_rotmat([0.0, 0.0, 0.0, 0.0])


def test_normalise_poses_invariants():
    rng = np.random.default_rng(2)
    c2w, k = random_cameras(rng, 6)
    rel, scale = normalise_poses(c2w, ref=2)
    np.testing.assert_allclose(rel[2], np.eye(4), atol=1e-12)
    assert np.linalg.norm(rel[:, :3, 3], axis=-1).max() == pytest.approx(1.0)
    # invariance: a rigid change of world frame plus a uniform change of units gives the same result
    world = np.eye(4)
    world[:3, :3] = random_cameras(rng, 1)[0][0, :3, :3]
    world[:3, 3] = [5.0, -2.0, 1.0]
    moved = world @ c2w
    moved[:, :3, 3] *= 3.0
    rel2, scale2 = normalise_poses(moved, ref=2)
    np.testing.assert_allclose(rel2, rel, atol=1e-9)
    assert scale2 == pytest.approx(scale / 3.0)
    # projections of a point are preserved up to the scale (rays of the same image pixel stay consistent)
    p = np.array([[0.3, -0.2, 4.0]])
    uv_world = project(p, c2w[4], k[4])
    p_rel = (np.linalg.inv(c2w[2]) @ np.append(p[0], 1.0))[:3] * scale
    np.testing.assert_allclose(project(p_rel[None], rel[4], k[4]), uv_world, atol=1e-9)


def test_static_camera_uses_scene_scale_or_nothing():
    c2w = np.tile(np.eye(4), (3, 1, 1))
    c2w[:, :3, 3] = [1.0, 2.0, 3.0]
    c2w[1, 0, 3] += 1e-11  # jitter below the unknown-scale threshold (1e-9)
    rel, scale = normalise_poses(c2w, 0)
    assert scale == 1.0
    c2w[1, 0, 3] += 1e-4  # below 1e-3 × scene_scale
    rel, scale = normalise_poses(c2w, 0, scene_scale=4.0)
    assert scale == pytest.approx(0.25)


def _dot_image(h, w, u, v):
    img = np.zeros((h, w, 3), np.uint8)
    img[int(v * h), int(u * w)] = 255
    return img


def _centroid(img):
    ys, xs = np.nonzero(img[..., 0].astype(float) > 0)
    weights = img[ys, xs, 0].astype(float)
    return (np.average(xs, weights=weights) + 0.5) / img.shape[1], (
        np.average(ys, weights=weights) + 0.5
    ) / img.shape[0]


@pytest.mark.parametrize("mode", ["crop", "pad"])
@pytest.mark.parametrize("hw", [(120, 200), (200, 120), (64, 64)])
def test_square_image_intrinsics_follow_the_pixels(mode, hw):
    """A 3D point's projection with the updated K lands on the dot drawn where the old K projected it."""
    h, w = hw
    k = np.array([[0.9, 0.0, 0.47], [0.0, 0.9 * w / h, 0.53], [0.0, 0.0, 1.0]])
    point = np.array([[0.05, -0.04, 1.0]])
    u, v = project(point, np.eye(4), k)[0]
    u_px, v_px = (np.floor(u * w) + 0.5) / w, (np.floor(v * h) + 0.5) / h  # centre of the pixel holding it
    out, k2 = square_image(_dot_image(h, w, u, v), k, 40, mode)
    assert out.shape == (40, 40, 3)
    # the dot's centre, mapped through the analytic transform, matches the new K's projection of the same ray
    point_px = np.array([[(u_px - k[0, 2]) / k[0, 0], (v_px - k[1, 2]) / k[1, 1], 1.0]])
    u2, v2 = project(point_px, np.eye(4), k2)[0]
    cu, cv = _centroid(out)
    assert abs(cu - u2) * 40 < 0.6 and abs(cv - v2) * 40 < 0.6


def test_square_crop_matches_formula():
    k = np.array([[1.0, 0.0, 0.5], [0.0, 1.5, 0.5], [0.0, 0.0, 1.0]])
    _, k2 = square_image(np.zeros((200, 300, 3), np.uint8), k, 100, "crop")
    # scale 0.5 → 150×100, crop 25 px each side: fx' = 1.0·150/100, cx' = (0.5·150 − 25)/100
    np.testing.assert_allclose(k2, [[1.5, 0, 0.5], [0, 1.5, 0.5], [0, 0, 1]], atol=1e-12)
    _, k3 = square_image(np.zeros((200, 300, 3), np.uint8), k, 100, "pad")
    # pad to 300×300 (50 px top), then ×1/3: fy' = 1.5·200/300, cy' = (0.5·200 + 50)/300
    np.testing.assert_allclose(k3, [[1.0, 0, 0.5], [0, 1.0, 0.5], [0, 0, 1]], atol=1e-12)
    with pytest.raises(ValueError, match="square mode"):
        square_image(np.zeros((4, 4, 3), np.uint8), k, 2, "stretch")
