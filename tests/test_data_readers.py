"""read_scene on tiny datasets in each published layout: poses, intrinsics, frame order vs ground truth."""

import json
import os

import numpy as np
import pytest

from genxd_jax.data import BadSceneError, discover_scenes, read_scene
from genxd_jax.data import fixtures as fx
from genxd_jax.data.cameras import OPENGL_TO_OPENCV
from genxd_jax.data.images import load_frame

ATOL = 1e-5


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("model", ["PINHOLE", "SIMPLE_PINHOLE", "OPENCV"])
def test_camvid30k_matches_ground_truth(tmp_path, rng, model):
    c2w, k = fx.random_cameras(rng, 5)
    if model == "SIMPLE_PINHOLE":
        k[:, 1, 1] = k[:, 0, 0] * 32 / 24  # one focal length in pixels
    clip = tmp_path / "clip_0001"
    paths = fx.write_colmap_scene(str(clip), rng, c2w, k, model=model)
    scene = read_scene("camvid30k", clip)
    assert scene.indicator == 2
    assert list(scene.frames) == paths  # name order although images.bin is shuffled
    np.testing.assert_allclose(scene.c2w, c2w, atol=ATOL)
    np.testing.assert_allclose(scene.intrinsics, k, atol=ATOL)
    assert scene.motion_strength is None  # no meta.json → the proxy will be used


def test_colmap_reader_agrees_with_pycolmap(tmp_path, rng):
    pycolmap = pytest.importorskip("pycolmap")
    c2w, k = fx.random_cameras(rng, 3)
    fx.write_colmap_scene(str(tmp_path / "c"), rng, c2w, k)
    rec = pycolmap.Reconstruction(str(tmp_path / "c" / "0"))
    by_name = {img.name: img for img in rec.images.values()}
    scene = read_scene("camvid30k", tmp_path / "c")
    for i, frame in enumerate(scene.frames):
        w2c = np.eye(4)
        w2c[:3] = by_name[os.path.basename(frame)].cam_from_world().matrix()
        np.testing.assert_allclose(np.linalg.inv(w2c), scene.c2w[i], atol=ATOL)


def test_camvid30k_meta_motion(tmp_path, rng):
    c2w, k = fx.random_cameras(rng, 3)
    fx.write_colmap_scene(str(tmp_path / "c"), rng, c2w, k)
    (tmp_path / "c" / "meta.json").write_text(json.dumps({"motion_strength": 1.5}))
    assert read_scene("camvid30k", tmp_path / "c").motion_strength == 1.5


def test_mvimgnet(tmp_path, rng):
    c2w, k = fx.random_cameras(rng, 4)
    obj = tmp_path / "7" / "obj_a"
    paths = fx.write_colmap_scene(str(obj), rng, c2w, k, model_subdir="sparse/0", model="SIMPLE_RADIAL")
    k[:, 1, 1] = k[:, 0, 0] * 32 / 24
    scene = read_scene("mvimgnet", obj)
    assert scene.indicator == 0 and list(scene.frames) == paths
    np.testing.assert_allclose(scene.c2w, c2w, atol=ATOL)
    np.testing.assert_allclose(scene.intrinsics, k, atol=ATOL)
    assert discover_scenes("mvimgnet", tmp_path) == [str(obj)]


@pytest.mark.parametrize("ndc", ["ndc_isotropic", "ndc_norm_image_bounds"])
def test_co3d(tmp_path, rng, ndc):
    seqs = {"101_11_22": fx.random_cameras(rng, 4), "202_33_44": fx.random_cameras(rng, 3)}
    paths = fx.write_co3d_category(str(tmp_path / "apple"), rng, seqs, fmt=ndc)
    for seq, (c2w, k) in seqs.items():
        scene = read_scene("co3d", tmp_path / "apple" / seq)
        assert list(scene.frames) == paths[seq]  # sorted by frame_number though the annotations are shuffled
        np.testing.assert_allclose(scene.c2w, c2w, atol=ATOL)
        np.testing.assert_allclose(scene.intrinsics, k, atol=ATOL)
    assert discover_scenes("co3d", tmp_path) == [str(tmp_path / "apple" / s) for s in sorted(seqs)]


def test_co3d_pytorch3d_convention_projects_like_opencv(tmp_path, rng):
    """A world point projected with the raw PyTorch3D camera (NDC) lands where the OpenCV camera puts it."""
    c2w, k = fx.random_cameras(rng, 1)
    h, w = 24, 32
    vp = fx.co3d_viewpoint(c2w[0], k[0], h, w, "ndc_isotropic")
    point = c2w[0, :3, 3] + c2w[0, :3, 2] * 3.0 + c2w[0, :3, 0] * 0.4  # in front of the camera
    cam = point @ np.array(vp["R"]) + np.array(vp["T"])  # PyTorch3D: x left, y up, NDC
    ndc = np.array(vp["focal_length"]) * cam[:2] / cam[2] + np.array(vp["principal_point"])
    s = min(h, w) / 2.0
    pix_p3d = np.array([w / 2.0, h / 2.0]) - ndc * s  # NDC +x is left, +y is up
    fx.write_co3d_category(str(tmp_path / "cat"), rng, {"s": (c2w, k)}, height=h, width=w)
    scene = read_scene("co3d", tmp_path / "cat" / "s")
    w2c = np.linalg.inv(scene.c2w[0])
    pc = w2c[:3, :3] @ point + w2c[:3, 3]
    uv = (scene.intrinsics[0] @ pc)[:2] / pc[2] * np.array([w, h])
    np.testing.assert_allclose(uv, pix_p3d, atol=1e-6)


@pytest.mark.parametrize("fmt", ["re10k", "acid"])
def test_re10k(tmp_path, rng, fmt):
    c2w, k = fx.random_cameras(rng, 5)
    stamps = [50_000_000 + 33_366 * i for i in range(5)]
    txt = tmp_path / "test" / "0a1b2c3d4e.txt"
    paths = fx.write_re10k(str(txt), rng, c2w, k, timestamps=stamps)
    scene = read_scene(fmt, txt)
    assert list(scene.frames) == paths and scene.indicator == 0
    np.testing.assert_allclose(scene.c2w, c2w, atol=ATOL)
    np.testing.assert_allclose(scene.intrinsics, k, atol=ATOL)
    assert discover_scenes(fmt, tmp_path) == [str(txt)]


def test_objaverse_zero123(tmp_path, rng):
    c2w, _ = fx.random_cameras(rng, 12)
    paths = fx.write_zero123(str(tmp_path / "uid"), rng, c2w)
    scene = read_scene("objaverse", tmp_path / "uid")
    assert list(scene.frames) == paths and scene.closed_orbit and scene.indicator == 0
    np.testing.assert_allclose(scene.c2w, c2w, atol=ATOL)
    np.testing.assert_allclose(scene.intrinsics[:, 0, 0], 35 / 32)
    np.testing.assert_allclose(scene.intrinsics[:, :2, 2], 0.5)
    # RGBA is composited on white: a fully transparent pixel decodes as white.
    frame = load_frame(paths[0])
    assert frame.shape == (16, 16, 3) and frame.dtype == np.uint8


def test_zero123_blender_convention(tmp_path, rng):
    """The .npy is Blender's w2c (camera looks along −z): a point ahead of the camera has negative z."""
    c2w, _ = fx.random_cameras(rng, 1)
    fx.write_zero123(str(tmp_path / "o"), rng, c2w)
    w2c_gl = np.load(tmp_path / "o" / "000.npy")
    ahead = c2w[0, :3, 3] + 2.0 * c2w[0, :3, 2]  # OpenCV forward
    assert (w2c_gl[:, :3] @ ahead + w2c_gl[:, 3])[2] == pytest.approx(-2.0)


def test_objaverse_transforms_json(tmp_path, rng):
    c2w, _ = fx.random_cameras(rng, 6)
    paths = fx.write_transforms(str(tmp_path / "lego"), rng, c2w, fx_norm=1.25)
    scene = read_scene("objaverse", tmp_path / "lego")
    assert list(scene.frames) == paths
    np.testing.assert_allclose(scene.c2w, c2w, atol=ATOL)
    np.testing.assert_allclose(scene.intrinsics[:, 0, 0], 1.25, atol=ATOL)
    np.testing.assert_allclose(scene.intrinsics[:, 1, 1], 1.25, atol=ATOL)
    # the OpenGL matrix in the file really is OpenCV · diag(1, −1, −1, 1)
    raw = json.loads((tmp_path / "lego" / "transforms.json").read_text())["frames"][0]["transform_matrix"]
    np.testing.assert_allclose(np.array(raw) @ OPENGL_TO_OPENCV, c2w[0], atol=1e-12)


def test_objaverse_anim_sorted_by_time(tmp_path, rng):
    c2w, _ = fx.random_cameras(rng, 5)
    times = np.array([0.5, 0.0, 1.0, 0.25, 0.75])
    paths = fx.write_transforms(str(tmp_path / "anim"), rng, c2w, fx_norm=1.0, times=times)
    scene = read_scene("objaverse_anim", tmp_path / "anim")
    order = np.argsort(times)
    assert scene.indicator == 2 and not scene.closed_orbit
    assert list(scene.frames) == [paths[i] for i in order]
    np.testing.assert_allclose(scene.c2w, c2w[order], atol=ATOL)


def test_objaverse_anim_zero123_with_meta(tmp_path, rng):
    c2w, _ = fx.random_cameras(rng, 4)
    paths = fx.write_zero123(str(tmp_path / "a"), rng, c2w, meta={"motion_strength": 0.7, "focal": 1.3889})
    scene = read_scene("objaverse_anim", tmp_path / "a")
    assert list(scene.frames) == paths and scene.motion_strength == pytest.approx(0.7)
    np.testing.assert_allclose(scene.intrinsics[:, 0, 0], 1.3889)


def test_synthetic_read_scene_is_deterministic():
    a = read_scene("synthetic", "4d/3/7", size=32, num_frames=6)
    b = read_scene("synthetic", "4d/3/7", size=32, num_frames=6)
    c = read_scene("synthetic", "4d/3/8", size=32, num_frames=6)
    np.testing.assert_array_equal(a.c2w, b.c2w)
    np.testing.assert_array_equal(a.frames[2](), b.frames[2]())
    assert not np.array_equal(a.frames[2](), c.frames[2]())
    assert a.indicator == 2 and len(a) == 6


def test_unknown_format_and_missing_path(tmp_path):
    with pytest.raises(ValueError, match="unknown scene format"):
        read_scene("nerfies", tmp_path)
    with pytest.raises(BadSceneError, match="does not exist"):
        read_scene("camvid30k", tmp_path / "nope")
    with pytest.raises(BadSceneError, match="no COLMAP model"):
        read_scene("camvid30k", tmp_path)
