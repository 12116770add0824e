"""Curation (issue 13): the paper's §3 pipeline on procedural videos with known cameras, depth and masks.

Unit tests check each step against closed forms (eq. 1 projection, eq. 2 alignment, eqs. 3–4 field, LK on a
known shift, the motion segmenter on a known object); the end-to-end tests run ``python -m genxd_jax.curate``
on small rendered clips (24 frames, 240×180) and compare with the ground truth: every frame registered,
ATE/extent < 2 %, RPE < 0.5°, the moving object's strength within 15 % of the exact value, a static scene's
below 0.2× that, a batch with a corrupt and a static video, and ``--resume``.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from genxd_jax.curation import align as align_lib
from genxd_jax.curation.cli import main as curate_main
from genxd_jax.curation.config import default_curation_config
from genxd_jax.curation.depth import DepthModel, FileDepth, load_depth_model
from genxd_jax.curation.motion_field import motion_field, motion_strength_from_correspondences
from genxd_jax.curation.segment import MotionSegmenter, link_instances
from genxd_jax.curation.sparse_depth import project_points, sample_map, sparse_depth_from_reconstruction
from genxd_jax.curation.synthetic import render_video, trajectory_errors
from genxd_jax.curation.track import LucasKanade
from genxd_jax.data import read_scene

F, H, W = 24, 180, 240
NB = 16  # frames of the batch clips


@pytest.fixture(scope="module")
def moving():
    return render_video(num_frames=F, height=H, width=W, object_speed=0.06, seed=0)


@pytest.fixture(scope="module")
def static():
    return render_video(num_frames=F, height=H, width=W, object_speed=0.0, seed=0)


def _write_clip(folder, video, *, masks=True, depth_scale=None):
    os.makedirs(folder / "frames", exist_ok=True)
    for i, frame in enumerate(video.frames):
        cv2.imwrite(str(folder / "frames" / f"f{i:03d}.png"), frame[..., ::-1])
        if masks:
            os.makedirs(folder / "masks", exist_ok=True)
            cv2.imwrite(str(folder / "masks" / f"f{i:03d}.png"), video.masks[i])
        if depth_scale is not None:
            os.makedirs(folder / "depth", exist_ok=True)
            np.save(folder / "depth" / f"f{i:03d}.npy", (video.depth[i] * depth_scale).astype(np.float32))


def _k_arg(video):
    k = video.k
    return f"{k[0, 0]},{k[1, 1]},{k[0, 2]},{k[1, 2]}"


# ------------------------------------------------------------------------------------------------ eq. 2
def _depth_and_samples(seed=0):
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:40, 0:60]
    depth = (2.0 + 0.05 * xs + 0.5 * np.sin(ys / 5.0) + rng.uniform(0, 0.3, (40, 60))).astype(np.float64)
    idx = rng.choice(depth.size, 150, replace=False)
    uv = np.stack([xs.ravel()[idx] + 0.5, ys.ravel()[idx] + 0.5], 1)
    return depth, uv, depth.ravel()[idx]


def test_median_alignment_recovers_a_pure_scale_exactly():
    depth, uv, sparse = _depth_and_samples()
    fit = align_lib.align_depth(depth / 3.7, uv, sparse, kind="depth", method="median")
    assert fit.scale == pytest.approx(3.7, rel=1e-12) and abs(fit.shift) < 1e-12
    np.testing.assert_allclose(fit.apply(depth / 3.7), depth, rtol=1e-6)
    # Disparity (Depth Anything's output) is aligned in 1/z and inverted: exact for a pure scale as well.
    fit = align_lib.align_depth(2.5 / depth, uv, sparse, kind="disparity", method="median")
    np.testing.assert_allclose(fit.apply(2.5 / depth), depth, rtol=1e-6)


def test_lstsq_recovers_scale_and_shift_where_the_median_formula_cannot():
    depth, uv, sparse = _depth_and_samples(1)
    rel = 3.7 * depth + 5.0
    fit = align_lib.align_depth(rel, uv, sparse, kind="depth", method="lstsq")
    assert fit.scale == pytest.approx(1 / 3.7, rel=1e-9) and fit.shift == pytest.approx(-5 / 3.7, rel=1e-9)
    np.testing.assert_allclose(fit.apply(rel), depth, rtol=1e-6)
    paper = align_lib.align_depth(rel, uv, sparse, kind="depth", method="median").apply(rel)
    assert np.max(np.abs(paper / depth - 1)) > 0.01  # eq. 2's documented blind spot: shifted depth
    # Robust to a few wild SfM points.
    bad = sparse.copy()
    bad[:5] *= 10
    np.testing.assert_allclose(align_lib.align_depth(rel, uv, bad, method="lstsq").apply(rel), depth, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown alignment"):
        align_lib.fit_scale_shift(np.ones(3), np.ones(3), "mean")
    with pytest.raises(ValueError, match="depth kind"):
        align_lib.align_depth(rel, uv, sparse, kind="inverse")


# ------------------------------------------------------------------------------------------ eqs. 1, 3, 4
def test_projection_and_motion_field_closed_forms():
    k = np.array([[200.0, 0, 120], [0, 210.0, 90], [0, 0, 1]])
    c2w_i, c2w_j = np.eye(4), np.eye(4)
    c2w_j[:3, 3] = [0.1, -0.05, 0.2]
    pts_world = np.array([[0.3, -0.2, 4.0], [-1.0, 0.5, 6.0]])
    uv_i, z_i = project_points(pts_world, np.linalg.inv(c2w_i), k)
    np.testing.assert_allclose(uv_i[0], [120 + 200 * 0.3 / 4, 90 - 210 * 0.2 / 4])
    np.testing.assert_allclose(z_i, [4.0, 6.0])
    uv_j, _ = project_points(pts_world, np.linalg.inv(c2w_j), k)
    # A static point's field is zero whatever the camera motion; a point that moved by (δu, δv) px in frame j
    # has field (δu/W, δv/H).
    field = motion_field(uv_i, uv_j, z_i, k, k, c2w_i, c2w_j, (180, 240))
    np.testing.assert_allclose(field, 0, atol=1e-12)
    field = motion_field(uv_i, uv_j + [[2.4, -1.8], [0, 0.9]], z_i, k, k, c2w_i, c2w_j, (180, 240))
    np.testing.assert_allclose(field, [[0.01, -0.01], [0, 0.005]], atol=1e-12)
    strength, objs = motion_strength_from_correspondences(
        {1: [(0, uv_i, uv_j + [[2.4, 0], [2.4, 0]], z_i)], 2: [(0, uv_i[:1], uv_j[:1], z_i[:1])]},
        k, np.stack([c2w_i, c2w_j]), (180, 240))
    assert strength == pytest.approx(1.0) and objs[1]["keypoints"] == 2 and objs[2]["strength"] == pytest.approx(0)


def test_lucas_kanade_on_a_known_shift_and_forward_backward_check(moving):
    frame = cv2.cvtColor(moving.frames[0], cv2.COLOR_RGB2GRAY)
    shift = np.array([1.7, -0.6])
    moved = cv2.warpAffine(frame, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (W, H),
                           flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    moved[:, 160:] = np.random.default_rng(0).integers(0, 255, (H, W - 160))  # a region that changed entirely
    ys, xs = np.mgrid[20:160:10, 20:220:10]
    pts = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], 1).astype(np.float64)
    out, valid = LucasKanade(11, 3, 0.5)(frame, moved, pts)
    left = pts[:, 0] < 140
    assert valid[left].mean() > 0.9 and valid[pts[:, 0] > 175].mean() < 0.3
    err = np.linalg.norm(out[valid & left] - pts[valid & left] - shift, axis=1)
    assert np.median(err) < 0.05


def test_motion_segmenter_finds_the_moving_object_and_nothing_in_a_static_scene(moving, static):
    cfg = default_curation_config().seg
    masks = MotionSegmenter(cfg)(moving.frames)
    gt = moving.masks > 0
    assert set(np.unique(masks)) == {0, 1}  # one instance, linked over frames
    assert np.any(masks > 0, axis=(1, 2)).mean() > 0.9
    assert (gt & (masks > 0)).sum() / gt.sum() > 0.7  # recall
    assert ((masks > 0) & ~gt).sum() / (masks > 0).sum() < 0.4  # false positives are tolerated, within reason
    assert not np.any(MotionSegmenter(cfg)(static.frames))


def test_instance_linking_keeps_ids_across_frames():
    a = np.zeros((20, 20), bool)
    a[2:8, 2:8] = True
    b = np.zeros((20, 20), bool)
    b[10:18, 10:18] = True
    shifted = np.roll(a, 1, axis=1)
    ids = link_instances([[a, b], [shifted], [np.roll(b, 1, 0)], []], (4, 20, 20), min_frames=2)
    assert ids[0][a].max() == ids[1][shifted].min() != ids[0][b].max() == ids[2][np.roll(b, 1, 0)].min()
    assert link_instances([[a], []], (2, 20, 20), min_frames=2).max() == 0  # seen once: dropped


def test_depth_protocol_and_user_files(tmp_path):
    np.save(tmp_path / "a.npy", np.ones((8, 12), np.float32))
    depth = FileDepth(str(tmp_path), "disparity")
    assert depth.load("a", (8, 12), (4, 6)).shape == (4, 6)
    with pytest.raises(ValueError, match="b.npy"):
        depth.load("b", (8, 12), (4, 6))
    with pytest.raises(ValueError, match="expected"):
        depth.load("a", (9, 12), (4, 6))

    class Const:
        kind = "disparity"

        def __call__(self, rgb):
            return np.ones(rgb.shape[:2], np.float32)

    assert isinstance(Const(), DepthModel)
    with pytest.raises(ValueError, match="da2:WEIGHTS"):
        load_depth_model("midas:x")


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def curated(tmp_path_factory, moving):
    """The moving clip through the CLI with user masks, depth (z-depth × 3.7) and intrinsics; resized from
    240×180 to 200×150 so that intrinsics, masks and depth maps are rescaled with the frames."""
    root = tmp_path_factory.mktemp("single")
    _write_clip(root / "clip", moving, depth_scale=3.7)
    out = root / "out"
    rc = curate_main([str(root / "clip" / "frames"), str(out), "--masks", str(root / "clip" / "masks"),
                      "--depth", str(root / "clip" / "depth"), "--depth-kind", "depth",
                      "--intrinsics", _k_arg(moving), "--size", "150"])
    assert rc == 0
    return out / "frames"


def test_cli_single_clip_layout_poses_and_motion_strength(curated, moving):
    meta = json.loads((curated / "meta.json").read_text())
    assert meta["status"] == "kept", meta["reason"]
    assert meta["num_frames"] == F and meta["size"] == [150, 200] and meta["input_size"] == [H, W]
    assert meta["depth_source"] == "files" and meta["segmenter"] == "user" and meta["align"] == "median"
    assert set(meta["timings"]) == {"frames", "segment", "sfm", "depth", "track", "motion"}
    assert sorted(os.listdir(curated / "0")) == ["cameras.bin", "images.bin", "points3D.bin", "project.ini"]
    scene = read_scene("camvid30k", curated)  # every frame registered, in time order
    assert [os.path.basename(f) for f in scene.frames] == [f"f{i:03d}.jpg" for i in range(F)]
    assert scene.motion_strength == meta["motion_strength"]
    ate, rpe = trajectory_errors(scene.c2w, moving.c2w)
    assert ate < 0.02 and rpe < 0.5
    # Known intrinsics kept fixed and rescaled to the written images (normalised values are unchanged).
    np.testing.assert_allclose(scene.intrinsics[0][:2, :2], np.diag([moving.k[0, 0] / W, moving.k[1, 1] / H]),
                               rtol=1e-6)
    gt = moving.ground_truth_strength()
    assert gt > 0.5 and abs(meta["motion_strength"] - gt) < 0.15 * gt
    obj = meta["objects"][0]
    assert obj["id"] == 1 and obj["keypoints"] > 200 and obj["pairs"] == F - 1


def test_sparse_depth_matches_the_true_depth_up_to_the_sfm_scale(curated, moving):
    import pycolmap

    rec = pycolmap.Reconstruction(str(curated / "0"))
    names = [f"f{i:03d}.jpg" for i in range(F)]
    ratios = []
    for i, (uv, z) in enumerate(sparse_depth_from_reconstruction(rec, names)):
        assert len(z) > 50
        true = sample_map(cv2.resize(moving.depth[i], (200, 150), interpolation=cv2.INTER_NEAREST), uv)
        ok = np.isfinite(true)
        assert ok.mean() > 0.95
        ratios.append(np.median(z[ok] / true[ok]))
        assert np.median(np.abs(z[ok] / true[ok] / ratios[-1] - 1)) < 0.02
    assert np.std(ratios) / np.mean(ratios) < 0.01  # one scale for the whole clip


@pytest.fixture(scope="module")
def batch(tmp_path_factory, moving, static):
    """INPUT folder: a corrupt video, the static scene as an mp4 (with user masks of the box and user disparity
    maps), and the moving clip as frames with defaults only (motion segmenter, no depth source); the first NB
    frames at 150 px; --jobs 2, --min-motion 0.3."""
    import imageio_ffmpeg

    root = tmp_path_factory.mktemp("batch")
    (root / "in").mkdir()
    (root / "in" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video" * 10)
    writer = imageio_ffmpeg.write_frames(str(root / "in" / "still.mp4"), (W, H), fps=10, quality=10,
                                         macro_block_size=4, ffmpeg_log_level="error")
    writer.send(None)
    for frame in static.frames[:NB]:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    os.makedirs(root / "masks" / "still")
    os.makedirs(root / "depth" / "still")
    for i in range(NB):
        cv2.imwrite(str(root / "masks" / "still" / f"{i:05d}.png"), static.masks[i])
        np.save(root / "depth" / "still" / f"{i:05d}.npy", 1.0 / static.depth[i])
    _write_clip(root / "tmp", moving, masks=False)
    os.rename(root / "tmp" / "frames", root / "in" / "walker")
    out = root / "out"
    args = [str(root / "in"), str(out), "--masks", str(root / "masks"), "--depth", str(root / "depth"),
            "--depth-kind", "disparity", "--min-motion", "0.3", "--size", "150", "--max-frames", str(NB)]
    assert curate_main([*args, "--jobs", "2"]) == 0
    return root, out, args


def test_batch_rejects_corrupt_and_static_keeps_moving(batch, moving):
    _, out, _ = batch
    metas = {c: json.loads((out / c / "meta.json").read_text()) for c in ("broken", "still", "walker")}
    assert metas["broken"]["status"] == "rejected" and "unreadable video" in metas["broken"]["reason"]
    assert metas["broken"]["rejected_at"] == "frames"
    still = metas["still"]
    assert still["status"] == "rejected" and "--min-motion" in still["reason"], still["reason"]
    assert still["segmenter"] == "user" and still["depth_source"] == "files" and still["depth_kind"] == "disparity"
    assert still["objects"][0]["keypoints"] > 100 and still["num_frames"] == NB
    walker = metas["walker"]
    assert walker["status"] == "kept", walker["reason"]
    assert walker["segmenter"] == "motion" and walker["depth_source"] == "sfm_sparse_interpolated"
    assert read_scene("camvid30k", out / "walker").motion_strength == walker["motion_strength"]
    gt = moving.ground_truth_strength(num_frames=NB)
    assert still["motion_strength"] < 0.2 * gt  # a static (masked) object: near-zero field
    assert abs(walker["motion_strength"] - gt) < 0.3 * gt  # defaults only: no depth source, found masks


def test_resume_redoes_nothing_finished(batch):
    root, out, args = batch
    stamp = {c: os.stat(out / c / "meta.json").st_mtime_ns for c in ("broken", "still", "walker")}
    model = os.stat(out / "walker" / "0" / "images.bin").st_mtime_ns
    assert curate_main([*args, "--resume"]) == 0
    assert {c: os.stat(out / c / "meta.json").st_mtime_ns for c in stamp} == stamp
    # A run killed after SfM: the clip has no meta.json and its later stages are not marked done.
    manifest_path = out / "walker" / ".work" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    before = json.loads((out / "walker" / "meta.json").read_text())
    for stage in ("depth", "track"):
        manifest["stages"].pop(stage)
    manifest_path.write_text(json.dumps(manifest))
    os.remove(out / "walker" / "meta.json")
    assert curate_main([str(root / "in" / "walker"), str(out), "--resume", "--min-motion", "0.3",
                        "--size", "150", "--max-frames", str(NB)]) == 0
    after = json.loads((out / "walker" / "meta.json").read_text())
    assert os.stat(out / "walker" / "0" / "images.bin").st_mtime_ns == model  # SfM not redone
    for stage in ("frames", "segment", "sfm"):
        assert after["timings"][stage] == before["timings"][stage]
    assert after["motion_strength"] == pytest.approx(before["motion_strength"], rel=1e-6)
    assert after["status"] == "kept"


def test_prepare_packs_only_kept_clips(batch, tmp_path):
    import importlib.util
    import pathlib

    from genxd_jax.data import discover_scenes

    _, out, _ = batch
    spec = importlib.util.spec_from_file_location(
        "genxd_data_prepare", pathlib.Path(__file__).resolve().parents[1] / "data" / "prepare.py")
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    staged, kept, rejected = prepare.stage_kept_clips(str(out), str(tmp_path / "staged"))
    assert (kept, rejected) == (1, 2)
    scenes = discover_scenes("camvid30k", staged)  # what the TFDS builder packs
    assert [os.path.basename(s) for s in scenes] == ["walker"]
    assert read_scene("camvid30k", scenes[0]).motion_strength > 0.3


def _legacy_model(folder, names, w2c, k, width, height, order):
    """A COLMAP model packed by hand in the legacy three-file binary layout (no rigs.bin/frames.bin), as the
    released CamVid-30K and MVImgNet clips ship it; images written out of name order."""
    import struct

    from genxd_jax.data.cameras import rotmat_to_qvec

    os.makedirs(folder)
    with open(folder / "cameras.bin", "wb") as f:
        f.write(struct.pack("<Q", 1) + struct.pack("<IiQQ", 7, 1, width, height))
        f.write(struct.pack("<4d", k[0, 0], k[1, 1], k[0, 2], k[1, 2]))
    with open(folder / "images.bin", "wb") as f:
        f.write(struct.pack("<Q", len(names)))
        for i in order:
            f.write(struct.pack("<I7dI", 100 - i, *rotmat_to_qvec(w2c[i][:3, :3]), *w2c[i][:3, 3], 7))
            f.write(names[i].encode() + b"\x00" + struct.pack("<Q", 1) + struct.pack("<ddq", 3.0, 4.0, -1))
    with open(folder / "points3D.bin", "wb") as f:
        f.write(struct.pack("<Q", 0))


def test_colmap_io_through_pycolmap_legacy_layout_and_writer(tmp_path):
    from genxd_jax.data import colmap, fixtures

    rng = np.random.default_rng(3)
    c2w, k_norm = fixtures.random_cameras(rng, 4)
    k = np.diag([50.0, 40.0, 1.0])
    k[:2, 2] = [16.5, 12.25]
    names = [f"{i:05d}.jpg" for i in range(4)]
    w2c = np.stack([np.linalg.inv(m) for m in c2w])
    _legacy_model(tmp_path / "legacy", names, w2c, k, 32, 24, order=[2, 0, 3, 1])
    got_names, got_c2w, intr = colmap.read_colmap_model(str(tmp_path / "legacy"))
    assert got_names == names  # sorted by name although stored out of order with decreasing ids
    np.testing.assert_allclose(got_c2w, c2w, atol=1e-9)
    np.testing.assert_allclose(intr[0], [[50 / 32, 0, 16.5 / 32], [0, 40 / 24, 12.25 / 24], [0, 0, 1]], atol=1e-12)
    # The writer (pycolmap) produces the released three-file layout, ids in the requested order.
    fixtures.write_colmap_model(str(tmp_path / "new"), names, c2w, k_norm, 32, 24, order=[3, 1, 0, 2])
    assert sorted(os.listdir(tmp_path / "new")) == ["cameras.bin", "images.bin", "points3D.bin"]
    import pycolmap

    rec = pycolmap.Reconstruction(str(tmp_path / "new"))
    assert {img.name: iid for iid, img in rec.images.items()} == {
        "00003.jpg": 1, "00001.jpg": 2, "00000.jpg": 3, "00002.jpg": 4}
    got_names, got_c2w, intr = colmap.read_colmap_model(str(tmp_path / "new"))
    np.testing.assert_allclose(got_c2w, c2w, atol=1e-9)
    np.testing.assert_allclose(intr, k_norm, atol=1e-12)


def test_clip_discovery_sampling_and_cli_errors(tmp_path, moving):
    from genxd_jax.curation.frames import discover_clips, output_size, read_clip

    for i in range(5):
        os.makedirs(tmp_path / "batch" / "b", exist_ok=True)
        cv2.imwrite(str(tmp_path / "batch" / "b" / f"x{i}.png"), moving.frames[i][..., ::-1])
    (tmp_path / "batch" / "a.mp4").write_bytes(b"junk")
    (tmp_path / "batch" / "notes.txt").write_text("ignored")
    clips = discover_clips(str(tmp_path / "batch"))
    assert [(c.name, c.kind) for c in clips] == [("a", "video"), ("b", "frames")]
    assert [(c.name, c.kind) for c in discover_clips(str(tmp_path / "batch" / "b"))] == [("b", "frames")]
    stems, frames = read_clip(clips[1], stride=2, max_frames=2)
    assert stems == ["x0", "x2"] and frames.shape == (2, H, W, 3)
    np.testing.assert_array_equal(frames[1], moving.frames[2])  # RGB, lossless PNG
    assert output_size((180, 240), 256) == (256, 341) and output_size((480, 270), 256) == (455, 256)
    with pytest.raises(SystemExit) as err:
        curate_main([str(tmp_path / "batch"), str(tmp_path / "o"), "--intrinsics", "1,2,3"])
    assert err.value.code == 2
    with pytest.raises(SystemExit):
        curate_main([str(tmp_path / "missing"), str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        curate_main([str(tmp_path / "batch"), str(tmp_path / "o"), "--depth-model", "da2:/no/such/file"])


def test_depth_model_path_with_a_disparity_model(curated, moving, tmp_path):
    """The --depth-model route (a DepthModel of kind "disparity", here exact inverse depth × 2 standing in for
    Depth Anything V2), resumed on the curated clip from its SfM stage: aligned in disparity space."""
    import shutil

    from genxd_jax.curation import pipeline
    from genxd_jax.curation.config import default_curation_config
    from genxd_jax.curation.depth import ArrayDepth
    from genxd_jax.curation.frames import ClipSource

    clip_dir = tmp_path / "frames"
    shutil.copytree(curated, clip_dir, symlinks=True)
    manifest_path = clip_dir / ".work" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for stage in ("depth", "track"):
        manifest["stages"].pop(stage)
    manifest_path.write_text(json.dumps(manifest))
    os.remove(clip_dir / "meta.json")
    pipeline._DEPTH_MODELS["da2:stub"] = ArrayDepth([2.0 / d for d in moving.depth], kind="disparity")
    try:
        cfg = default_curation_config()
        cfg.size = 150
        meta = pipeline.ClipCurator(ClipSource("frames", "unused", "frames"), str(tmp_path), cfg,
                                    pipeline.CurateOptions(depth_model="da2:stub"), resume=True).run()
    finally:
        pipeline._DEPTH_MODELS.pop("da2:stub")
    assert meta["status"] == "kept" and meta["depth_source"] == "da2" and meta["depth_kind"] == "disparity"
    gt = moving.ground_truth_strength()
    assert abs(meta["motion_strength"] - gt) < 0.15 * gt
