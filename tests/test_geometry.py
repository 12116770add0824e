"""Camera maths: poses, look-at, Plücker rays, rotations and trajectories (invariants and round trips)."""

import numpy as np
import pytest

from genxd_jax import geometry as g


def random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    return q if np.linalg.det(q) > 0 else -q


def random_pose(rng, scale=2.0) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = random_rotation(rng)
    m[:3, 3] = rng.normal(size=3) * scale
    return m


def assert_rigid(c2w, atol=1e-9):
    rot = c2w[..., :3, :3]
    np.testing.assert_allclose(
        np.einsum("...ji,...jk->...ik", rot, rot), np.broadcast_to(np.eye(3), rot.shape), atol=atol
    )
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=atol)
    np.testing.assert_allclose(c2w[..., 3, :], np.broadcast_to([0, 0, 0, 1.0], c2w.shape[:-2] + (4,)))


def official_orbit_c2w(elevation_deg, azimuth_deg, radius):
    """The official blender orbit_camera + look_at (OpenGL c2w), converted to OpenCV, written
    independently."""
    e, a = np.deg2rad(elevation_deg), np.deg2rad(azimuth_deg)
    campos = radius * np.array([np.cos(e) * np.sin(a), np.cos(e) * np.cos(a), np.sin(e)])
    fwd = campos / np.linalg.norm(campos)
    right = np.cross([0.0, 0.0, 1.0], fwd)
    right /= np.linalg.norm(right)
    up = np.cross(fwd, right)
    up /= np.linalg.norm(up)
    gl = np.eye(4)
    gl[:3, :3] = np.stack([right, up, fwd], axis=1)
    gl[:3, 3] = campos
    # The dataset: w2c_cv = diag(1,-1,-1,1) · inv(gl), padded and inverted back to a c2w.
    w2c_cv = np.diag([1.0, -1, -1, 1]) @ np.linalg.inv(gl)
    return np.linalg.inv(w2c_cv)


# ----------------------------------------------------------------------------------------------------------
# Poses and look-at.


@pytest.mark.parametrize("elev,azim", [(0, 0), (15, 30), (-20, 200), (45, -75)])
def test_orbit_camera_matches_official_and_looks_at_target(elev, azim):
    c2w = g.orbit_camera(elev, azim, 2.5)
    assert_rigid(c2w)
    np.testing.assert_allclose(c2w, official_orbit_c2w(elev, azim, 2.5), atol=1e-12)
    # The target (origin) projects to the image centre at depth r.
    p_cam = g.rigid_inverse(c2w) @ np.array([0, 0, 0, 1.0])
    np.testing.assert_allclose(p_cam[:3], [0, 0, 2.5], atol=1e-12)
    # World up (Z) appears towards the top of the image: negative camera y.
    assert (c2w[:3, :3].T @ np.array([0, 0, 1.0]))[1] < 0


def test_orbit_camera_position_convention():
    np.testing.assert_allclose(g.orbit_camera(0, 0, 3)[:3, 3], [0, 3, 0], atol=1e-12)
    np.testing.assert_allclose(g.orbit_camera(0, 90, 3)[:3, 3], [3, 0, 0], atol=1e-12)
    assert g.orbit_camera(30, 0, 3)[2, 3] == pytest.approx(1.5)


def test_look_at_general_and_degenerate():
    rng = np.random.default_rng(0)
    for _ in range(5):
        eye, target = rng.normal(size=3) * 3, rng.normal(size=3)
        c2w = g.look_at(eye, target, up=(0, 0, 1))
        assert_rigid(c2w)
        d = target - eye
        np.testing.assert_allclose(c2w[:3, 2], d / np.linalg.norm(d), atol=1e-12)
        assert c2w[:3, 0] @ np.array([0, 0, 1.0]) == pytest.approx(0, abs=1e-12)  # no roll
    with pytest.raises(g.CameraError, match="coincides"):
        g.look_at([1, 1, 1], [1, 1, 1])
    with pytest.raises(g.CameraError, match="parallel"):
        g.look_at([0, 0, 5], [0, 0, 0], up=(0, 0, 1))
    with pytest.raises(g.CameraError, match="straight up or down"):
        g.orbit_camera(90, 0, 2)
    with pytest.raises(g.CameraError, match="radius"):
        g.orbit_camera(0, 0, 0)


def test_rigid_inverse_and_relative_poses_round_trip():
    rng = np.random.default_rng(1)
    poses = np.stack([random_pose(rng) for _ in range(5)])
    np.testing.assert_allclose(g.rigid_inverse(poses), np.linalg.inv(poses), atol=1e-12)
    np.testing.assert_allclose(g.rigid_inverse(g.rigid_inverse(poses)), poses, atol=1e-12)
    rel = g.relative_poses(poses, poses[2])
    np.testing.assert_allclose(rel[2], np.eye(4), atol=1e-12)
    assert_rigid(rel)
    np.testing.assert_allclose(poses[2] @ rel, poses, atol=1e-12)
    # Invariant to a change of world frame.
    world = random_pose(rng)
    np.testing.assert_allclose(g.relative_poses(world @ poses, world @ poses[2]), rel, atol=1e-10)


def test_opengl_opencv_conversion_is_an_involution():
    pose = random_pose(np.random.default_rng(2))
    np.testing.assert_allclose(g.opengl_to_opencv(g.opengl_to_opencv(pose)), pose)
    cv = g.opengl_to_opencv(pose)
    np.testing.assert_allclose(cv[:3, 2], -pose[:3, 2])  # OpenCV looks along OpenGL's −z
    assert_rigid(cv)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.diag([1.0, 1, -1, 1]), "reflection"),
        (np.diag([2.0, 1, 1, 1]), "orthonormal"),
        (np.full((4, 4), np.nan), "non-finite"),
        (np.eye(4) + np.eye(4, k=-3), "last row"),
        (np.eye(3), "shape"),
    ],
)
def test_validate_c2w_rejects_impossible_poses(bad, match):
    with pytest.raises(g.CameraError, match=match):
        g.validate_c2w(bad)


def test_intrinsics_helpers():
    k = g.intrinsics_matrix(1.2, 1.1, 0.5, 0.45)
    pix = g.pixel_intrinsics(k, 640, 480)
    np.testing.assert_allclose(pix[:2, :], [[768, 0, 320], [0, 528, 216]])
    np.testing.assert_allclose(g.normalise_intrinsics(pix, 640, 480), k)
    assert g.broadcast_intrinsics(k, 5).shape == (5, 3, 3)
    with pytest.raises(g.CameraError, match="positive"):
        g.intrinsics_matrix(-1.0, 1.0)
    with pytest.raises(g.CameraError, match=r"\(3, 3\) or \(4, 3, 3\)"):
        g.broadcast_intrinsics(np.stack([k] * 3), 4)


# ----------------------------------------------------------------------------------------------------------
# Plücker rays.


def reference_rays(c2w, k, h, w):
    """Independent float64 NumPy version of the official get_rays + to_plucker."""
    out = np.zeros((len(c2w), h, w, 6))
    for f in range(len(c2w)):
        kinv = np.linalg.inv(k[f])
        for i in range(h):
            for j in range(w):
                d = kinv @ np.array([(j + 0.5) / w, (i + 0.5) / h, 1.0])
                d = c2w[f, :3, :3] @ (d / np.linalg.norm(d))
                out[f, i, j] = np.concatenate([d, np.cross(c2w[f, :3, 3], d)])
    return out


def test_plucker_rays_match_reference_and_invariants():
    rng = np.random.default_rng(3)
    c2w = np.stack([random_pose(rng) for _ in range(3)])
    k = np.stack([g.intrinsics_matrix(1.0 + 0.1 * i, 0.9 + 0.2 * i, 0.5, 0.48) for i in range(3)])
    rays = np.asarray(g.plucker_rays(c2w, k, 4, 6))
    assert rays.shape == (3, 4, 6, 6) and rays.dtype == np.float32
    np.testing.assert_allclose(rays, reference_rays(c2w, k, 4, 6), atol=2e-6)
    d, m = rays[..., :3], rays[..., 3:]
    np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.sum(d * m, axis=-1), 0.0, atol=1e-5)  # moment ⟂ direction


def test_rays_reproject_to_pixel_centres():
    rng = np.random.default_rng(4)
    c2w = random_pose(rng)[None]
    k = g.intrinsics_matrix(1.3, 1.1, 0.52, 0.47)[None]
    h, w = 5, 7
    rays = np.asarray(g.plucker_rays(c2w, k, h, w), np.float64)
    points = c2w[0, :3, 3] + 3.0 * rays[0, ..., :3]  # a point 3 units along every ray
    p_cam = np.einsum("ij,hwj->hwi", g.rigid_inverse(c2w[0])[:3, :3], points) + g.rigid_inverse(c2w[0])[:3, 3]
    uv = np.einsum("ij,hwj->hwi", k[0], p_cam / p_cam[..., 2:])[..., :2]
    xs, ys = (np.arange(w) + 0.5) / w, (np.arange(h) + 0.5) / h
    np.testing.assert_allclose(uv[..., 0], np.broadcast_to(xs, (h, w)), atol=1e-5)
    np.testing.assert_allclose(uv[..., 1], np.broadcast_to(ys[:, None], (h, w)), atol=1e-5)


def test_identity_camera_rays_have_zero_moment_and_centre_axis():
    rays = np.asarray(g.plucker_rays(np.eye(4)[None], g.intrinsics_matrix(1.0, 1.0)[None], 3, 3))
    np.testing.assert_allclose(rays[..., 3:], 0.0)
    np.testing.assert_allclose(rays[0, 1, 1, :3], [0, 0, 1], atol=1e-7)  # odd grid: centre pixel on the axis
    assert rays[0, 0, 0, 0] < 0 and rays[0, 0, 0, 1] < 0  # top-left pixel: left (−x) and up (−y)


# ----------------------------------------------------------------------------------------------------------
# Rotations.


def test_quaternion_round_trip_including_half_turns():
    rng = np.random.default_rng(5)
    rots = [random_rotation(rng) for _ in range(20)]
    rots += [np.diag([1.0, -1, -1]), np.diag([-1.0, 1, -1]), np.diag([-1.0, -1, 1]), np.eye(3)]
    rots = np.stack(rots)
    q = g.matrix_to_quaternion(rots)
    np.testing.assert_allclose(np.linalg.norm(q, axis=-1), 1.0, atol=1e-12)
    assert np.all(q[:, 0] >= 0)
    np.testing.assert_allclose(g.quaternion_to_matrix(q), rots, atol=1e-12)


def test_slerp_endpoints_and_constant_speed():
    rng = np.random.default_rng(6)
    q0, q1 = g.matrix_to_quaternion(random_rotation(rng)), g.matrix_to_quaternion(random_rotation(rng))
    qs = g.slerp(q0, q1, np.linspace(0, 1, 9))
    np.testing.assert_allclose(qs[0], q0, atol=1e-12)
    np.testing.assert_allclose(g.quaternion_to_matrix(qs[-1]), g.quaternion_to_matrix(q1), atol=1e-12)
    steps = [abs(np.dot(a, b)) for a, b in zip(qs[:-1], qs[1:], strict=True)]
    np.testing.assert_allclose(steps, steps[0], atol=1e-12)


# ----------------------------------------------------------------------------------------------------------
# Trajectories.


def azimuth_elevation(c2w):
    p = c2w[:, :3, 3]
    return np.degrees(np.arctan2(p[:, 0], p[:, 1])), np.degrees(
        np.arcsin(p[:, 2] / np.linalg.norm(p, axis=-1))
    )


def test_orbit_trajectory():
    poses = g.orbit_trajectory(12, elevation=15, azimuth_range=(0, 360), radius=2)
    assert poses.shape == (12, 4, 4)
    assert_rigid(poses)
    az, el = azimuth_elevation(poses)
    np.testing.assert_allclose(np.mod(az, 360), np.arange(12) * 30, atol=1e-9)  # endpoint excluded
    np.testing.assert_allclose(el, 15, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(poses[:, :3, 3], axis=-1), 2)
    for c2w in poses:  # every camera looks at the origin
        np.testing.assert_allclose((g.rigid_inverse(c2w) @ [0, 0, 0, 1.0])[:2], 0, atol=1e-12)
    c4d = g.orbit_trajectory(4, azimuth_range=(0, 360), consistent4d=True)
    # 360° − [0, linspace(0, 360, 3, endpoint excluded)] = [360, 360, 240, 120].
    np.testing.assert_allclose(np.mod(azimuth_elevation(c4d)[0] + 1e-9, 360), [0, 0, 240, 120], atol=1e-6)


def test_forward_trajectory_matches_official_example():
    poses = g.forward_trajectory(12, elevation=10, azimuth_range=(-30, 30), radius=2)
    assert_rigid(poses)
    az, el = azimuth_elevation(poses)
    np.testing.assert_allclose(az, [0, -20, -10, 0, 10, 20, 30, 20, 10, 0, -10, -20], atol=1e-9)
    np.testing.assert_allclose(
        el, [0, 10 / 3, 20 / 3, 10, 20 / 3, 10 / 3, 0, -10 / 3, -20 / 3, -10, -20 / 3, -10 / 3], atol=1e-9
    )
    with pytest.raises(g.CameraError, match="multiple of 4"):
        g.forward_trajectory(10)


def test_spiral_trajectory_looks_at_focus():
    ref = random_pose(np.random.default_rng(7))
    poses = g.spiral_trajectory(8, radius=0.4, focus_distance=3.0, z_amplitude=0.2, reference=ref)
    assert poses.shape == (8, 4, 4)
    assert_rigid(poses)
    focus = ref @ np.array([0, 0, 3.0, 1])
    local = np.einsum("ij,njk->nik", g.rigid_inverse(ref), poses)
    np.testing.assert_allclose(np.linalg.norm(local[:, :2, 3], axis=-1), 0.4, atol=1e-12)
    for c2w in poses:
        p = g.rigid_inverse(c2w) @ focus
        np.testing.assert_allclose(p[:2], 0, atol=1e-12)
        assert p[2] > 0
    with pytest.raises(g.CameraError, match="focus"):
        g.spiral_trajectory(4, focus_distance=0)


def test_interpolate_poses_hits_keys_and_slerps():
    rng = np.random.default_rng(8)
    keys = np.stack([random_pose(rng) for _ in range(3)])
    path = g.interpolate_poses(keys, 5)  # keys at frames 0, 2, 4
    assert_rigid(path)
    np.testing.assert_allclose(path[[0, 2, 4]], keys, atol=1e-12)
    np.testing.assert_allclose(path[1, :3, 3], keys[:2, :3, 3].mean(0), atol=1e-12)

    # The midpoint rotation is halfway in angle: R0ᵀR_mid and R_midᵀR1 turn by the same angle.
    def angle(a, b):
        return np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1))

    assert angle(keys[0, :3, :3], path[1, :3, :3]) == pytest.approx(angle(path[1, :3, :3], keys[1, :3, :3]))
    assert g.interpolate_poses(keys[:1], 3).shape == (3, 4, 4)


def test_smooth_trajectory_passes_through_views_and_is_smooth():
    keys = g.orbit_trajectory(4, elevation=10, azimuth_range=(0, 90), radius=2)[[0, 1, 3]]  # uneven keys
    path = g.smooth_trajectory(keys, 13)  # (13 − 1) is a multiple of (3 − 1): keys at 0, 6, 12
    assert path.shape == (13, 4, 4)
    assert_rigid(path)
    np.testing.assert_allclose(path[[0, 6, 12]], keys, atol=1e-9)
    centres = path[:, :3, 3]
    second = np.linalg.norm(np.diff(centres, 2, axis=0), axis=-1)
    first = np.linalg.norm(np.diff(centres, axis=0), axis=-1)
    assert second.max() < 0.5 * first.max()  # no kinks
    order = g.order_by_proximity(keys[[0, 2, 1]])
    np.testing.assert_array_equal(order, [0, 2, 1])
    with pytest.raises(g.CameraError, match="at least 2"):
        g.smooth_trajectory(keys[:1], 5)
