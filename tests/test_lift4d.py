"""4D lifting (issue 15): HexPlane sampling against NumPy and torch, the deformation's identity and time
invariance, the regularisers' closed forms, a fit of a procedural dynamic scene against the static 3D-GS fit,
DynamicScene files, and ``reconstruct --mode 4d`` end to end on the tiny checkpoint.

Everything runs at 32 px with the ``tiny`` 4D config (512 slots), so the 3D step, the fine step and the
renderers compile once for the module (the CLI runs reuse the fit's compiled steps in-process).
"""

import json

import imageio.v2 as imageio
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from genxd_jax import reconstruct as R
from genxd_jax.evaluation.image_metrics import psnr
from genxd_jax.lift import fit_dynamic_scene, fit_scene, load_ply, render, render_at
from genxd_jax.lift.deform import deform_gaussians, init_deform_mlp, zero_heads
from genxd_jax.lift.fit4d import DynamicScene
from genxd_jax.lift.fit4d_config import get_config
from genxd_jax.lift.hexplane import (
    COMBOS,
    PLANES,
    HexPlaneSpec,
    hexplane_features,
    init_hexplane,
    plane_tv,
    sample_plane,
    time_l1,
    time_smoothness,
)
from genxd_jax.lift.toy4d import make_toy_scene

SIZE = 32
T = 12
CAPACITY = 512


# ------------------------------------------------------------------------------------------------ references
def np_grid_sample(plane, u, v):
    """NumPy bilinear sampling, align_corners=True (−1 / +1 = centres of the first / last texel), border clamp:
    texel coordinate x = (u + 1)/2·(W − 1), clamped to [0, W − 1]; plane (C, H, W), u, v (N,) -> (N, C)."""
    c, h, w = plane.shape
    out = np.zeros((len(u), c))
    for n in range(len(u)):
        x = min(max((u[n] + 1) / 2 * (w - 1), 0.0), w - 1)
        y = min(max((v[n] + 1) / 2 * (h - 1), 0.0), h - 1)
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        x1, y1 = min(x0 + 1, w - 1), min(y0 + 1, h - 1)
        ax, ay = x - x0, y - y0
        out[n] = ((1 - ax) * (1 - ay) * plane[:, y0, x0] + ax * (1 - ay) * plane[:, y0, x1]
                  + (1 - ax) * ay * plane[:, y1, x0] + ax * ay * plane[:, y1, x1])
    return out


def test_sample_plane_matches_numpy_and_torch_grid_sample():
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(3, 5, 7)).astype(np.float32)
    uv = rng.uniform(-1.3, 1.3, size=(2, 64)).astype(np.float32)  # includes the border-clamped region
    uv[:, :4] = [[-1, 1, -1, 1], [-1, -1, 1, 1]]  # the four corners are texel centres exactly
    got = np.asarray(sample_plane(jnp.asarray(plane), jnp.asarray(uv[0]), jnp.asarray(uv[1])))
    np.testing.assert_allclose(got, np_grid_sample(plane, uv[0], uv[1]), atol=1e-5)
    np.testing.assert_allclose(got[:4], plane[:, [0, 0, -1, -1], [0, -1, 0, -1]].T, atol=1e-6)
    torch = pytest.importorskip("torch")
    ref = torch.nn.functional.grid_sample(
        torch.from_numpy(plane)[None], torch.from_numpy(uv.T.copy())[None, None], mode="bilinear",
        align_corners=True, padding_mode="border")[0, :, 0].T.numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_hexplane_features_product_over_planes_concat_over_scales():
    spec = HexPlaneSpec(channels=2, resolution=(4, 5, 6, 3), multires=(1, 2))
    grids = init_hexplane(jax.random.PRNGKey(1), spec)
    rng = np.random.default_rng(1)
    grids = [{k: jnp.asarray(rng.uniform(0.5, 1.5, v.shape), jnp.float32) for k, v in g.items()} for g in grids]
    assert grids[1]["xy"].shape == (2, 10, 8) and grids[1]["zt"].shape == (2, 3, 12)  # spatial axes × 2 only
    aabb = np.array([[-1.0, -2.0, 0.0], [1.0, 2.0, 3.0]], np.float32)
    pts = rng.uniform(aabb[0], aabb[1], (9, 3)).astype(np.float32)
    t = 0.3
    got = np.asarray(hexplane_features(grids, jnp.asarray(pts), t, jnp.asarray(aabb)))
    coords = np.concatenate([2 * (pts - aabb[0]) / (aabb[1] - aabb[0]) - 1, np.full((9, 1), t)], 1)
    want = []
    for planes in grids:
        prod = np.ones((9, 2))
        for (a, b), name in zip(COMBOS, PLANES):
            prod *= np_grid_sample(np.asarray(planes[name]), coords[:, a], coords[:, b])
        want.append(prod)
    assert got.shape == (9, spec.feature_dim)
    np.testing.assert_allclose(got, np.concatenate(want, 1), rtol=1e-5)


def test_all_ones_time_planes_give_time_invariant_features():
    spec = HexPlaneSpec(channels=4, resolution=(6, 6, 6, 5), multires=(1, 2))
    grids = init_hexplane(jax.random.PRNGKey(0), spec)
    for planes in grids:  # the reference initialisation
        for name in ("xt", "yt", "zt"):
            assert np.all(np.asarray(planes[name]) == 1.0)
        for name in ("xy", "xz", "yz"):
            vals = np.asarray(planes[name])
            assert vals.min() >= 0.1 and vals.max() <= 0.5 and vals.std() > 0.05
    pts = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (16, 3)), jnp.float32)
    aabb = jnp.asarray([[-1.0] * 3, [1.0] * 3])
    f = [np.asarray(hexplane_features(grids, pts, t, aabb)) for t in (0.0, 0.37, 1.0)]
    np.testing.assert_array_equal(f[0], f[1])
    np.testing.assert_array_equal(f[0], f[2])
    grids[0]["yt"] = grids[0]["yt"].at[:, -1, :].set(2.0)  # change the t = 1 row: now features depend on t
    assert np.abs(np.asarray(hexplane_features(grids, pts, 1.0, aabb)) - f[0]).max() > 0.01


def test_regularisers_closed_forms():
    r = jnp.arange(6, dtype=jnp.float32)
    linear = jnp.broadcast_to((0.5 * r)[None, :, None], (2, 6, 4))  # linear along rows: no 2nd difference
    quad = jnp.broadcast_to((r**2)[None, :, None], (2, 6, 4))  # second difference 2 everywhere
    ones = jnp.ones((2, 6, 4))
    g_lin = [{n: (linear if n in ("xt", "xy") else ones) for n in PLANES}]
    assert float(time_smoothness(g_lin)) == 0.0 and float(plane_tv(g_lin)) == 0.0
    g_quad = [{n: (quad if n in ("yt", "xz") else ones) for n in PLANES}]
    assert float(time_smoothness(g_quad)) == pytest.approx(4.0) and float(plane_tv(g_quad)) == pytest.approx(4.0)
    assert float(time_l1([{n: ones for n in PLANES}])) == 0.0
    assert float(time_l1([{n: 1.5 * ones for n in PLANES}])) == pytest.approx(3 * 0.5)


# ------------------------------------------------------------------------------------------------ deformation
@pytest.fixture(scope="module")
def toy():
    scene = make_toy_scene(40)
    clip = scene.clip(np.linspace(0.0, 1.0, T), SIZE)
    held_t = (np.arange(T - 1) + 0.5) / (T - 1)  # held-out (time, camera) pairs between the training frames
    held_frames, held_c2w, _, _ = scene.clip(held_t, SIZE)
    return scene, clip, (held_frames, held_c2w, held_t)


def test_zeroed_heads_give_the_identity_deformation(toy):
    scene = toy[0]
    g = scene.gaussians(0.3).pad_to(CAPACITY)
    spec = HexPlaneSpec(channels=4, resolution=(6, 6, 6, 5), multires=(1, 2))
    grids = init_hexplane(jax.random.PRNGKey(0), spec)
    mlp = init_deform_mlp(jax.random.PRNGKey(1), spec.feature_dim, 16)
    aabb = jnp.asarray([[-1.0] * 3, [1.0] * 3])
    moved = deform_gaussians(g, grids, mlp, aabb, 0.5)
    assert np.abs(np.asarray(moved.means - g.means)[np.asarray(g.active)]).max() > 1e-3  # Xavier init moves
    np.testing.assert_array_equal(np.asarray(moved.means)[~np.asarray(g.active)],
                                  np.asarray(g.means)[~np.asarray(g.active)])  # inactive slots untouched
    d = DynamicScene(canonical=g, grids=grids, mlp=zero_heads(mlp), aabb=aabb, times=jnp.linspace(0, 1, 3),
                     spec=spec)
    for t in (0.0, 0.5, 1.0):
        for f in ("means", "log_scales", "quats"):
            np.testing.assert_array_equal(np.asarray(getattr(d.at(t), f)), np.asarray(getattr(g, f)))
    c2w, k = scene.camera(0.5), scene.intrinsics()
    static = render(g, jnp.asarray(c2w, jnp.float32), jnp.asarray(k, jnp.float32), SIZE, SIZE)
    for t in (0.0, 0.7):
        out = render_at(d, t, c2w, k, SIZE, SIZE)
        np.testing.assert_array_equal(np.asarray(out.rgb), np.asarray(static.rgb))
        np.testing.assert_array_equal(np.asarray(out.alpha), np.asarray(static.alpha))
    white = render_at(d, 0.5, c2w, k, SIZE, SIZE, background=(1.0, 1.0, 1.0))
    expected = np.asarray(static.rgb) + (1 - np.asarray(static.alpha))[..., None]
    np.testing.assert_allclose(np.asarray(white.rgb), expected, atol=1e-5)


# ------------------------------------------------------------------------------------------------ fitting
@pytest.fixture(scope="module")
def fitted(toy):
    _, (frames, c2w, k, times), _ = toy
    config = get_config("tiny")
    d, info = fit_dynamic_scene(frames, c2w, k, times, seed=0, config=config, progress=False, return_info=True)
    static = fit_scene(frames, c2w, k, iterations=config.coarse_iterations + config.iterations, seed=0,
                       config=config.coarse, progress=False)
    return d, info, static, config


def test_dynamic_fit_beats_static_3dgs_on_heldout_time_camera_pairs(toy, fitted):
    scene, (frames, c2w, k, times), (held_frames, held_c2w, held_t) = toy
    d, info, static, config = fitted
    assert info.coarse is not None and len(info.losses) == config.iterations and np.all(np.isfinite(info.losses))
    kj = jnp.asarray(k, jnp.float32)
    dyn = [float(psnr(jnp.clip(render_at(d, t, c, k, SIZE, SIZE).rgb, 0, 1), f))
           for t, c, f in zip(held_t, held_c2w, held_frames)]
    sta = [float(psnr(jnp.clip(render(static, jnp.asarray(c, jnp.float32), kj, SIZE, SIZE).rgb, 0, 1), f))
           for c, f in zip(held_c2w, held_frames)]
    print(f"\nheld-out PSNR over {len(held_t)} (time, camera) pairs: 4D {np.mean(dyn):.2f} dB, "
          f"static 3D-GS {np.mean(sta):.2f} dB ({config.coarse_iterations}+{config.iterations} vs "
          f"{config.coarse_iterations + config.iterations} iterations)")
    assert np.mean(dyn) > np.mean(sta) + 1.5
    assert np.mean(dyn) > 22.0
    # time matters: the same held-out cameras rendered at the reversed times 1 − t fit the frames far worse
    wrong = [float(psnr(jnp.clip(render_at(d, 1.0 - t, c, k, SIZE, SIZE).rgb, 0, 1), f))
             for t, c, f in zip(held_t, held_c2w, held_frames)]
    print(f"held-out PSNR at the reversed times 1 - t: {np.mean(wrong):.2f} dB")
    assert np.mean(dyn) > np.mean(wrong) + 1.0


def test_dynamic_scene_save_load_round_trip(fitted, toy, tmp_path):
    d = fitted[0]
    scene = toy[0]
    out = d.save(tmp_path / "dyn")
    assert {p.name for p in out.iterdir()} == {"canonical.ply", "deformation.safetensors", "deformation.json",
                                               "times"}
    assert len(list((out / "times").glob("*.ply"))) == T
    meta = json.loads((out / "deformation.json").read_text())
    assert meta["exported"][3]["t"] == pytest.approx(3 / (T - 1))
    d2 = DynamicScene.load(out)
    c2w, k = scene.camera(0.4), scene.intrinsics()
    np.testing.assert_allclose(np.asarray(render_at(d2, 0.45, c2w, k, SIZE, SIZE).rgb),
                               np.asarray(render_at(d, 0.45, c2w, k, SIZE, SIZE).rgb), atol=1e-5)
    # a per-time .ply is the deformed scene in the standard layout
    g3 = load_ply(out / meta["exported"][3]["file"])
    ref = d.at(meta["exported"][3]["t"])
    np.testing.assert_allclose(np.asarray(g3.means), np.asarray(ref.means)[np.asarray(ref.active)], atol=1e-6)
    with pytest.raises(FileExistsError):
        d.save(out)
    d.save(out, times=[0.0, 1.0], overwrite=True)
    assert len(list((out / "times").glob("*.ply"))) == 2
    (out / "deformation.safetensors").unlink()
    with pytest.raises(ValueError, match="deformation.safetensors"):
        DynamicScene.load(out)


def test_fit_dynamic_scene_rejects_bad_clips(toy):
    _, (frames, c2w, k, times), _ = toy
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_dynamic_scene(frames, c2w, k, times * 1.5, progress=False)
    with pytest.raises(ValueError, match="at least 2"):
        fit_dynamic_scene(frames[:1], c2w[:1], k, times[:1], progress=False)
    with pytest.raises(ValueError, match="one time per frame"):
        fit_dynamic_scene(frames, c2w, k, times[:-1], progress=False)
    with pytest.raises(ValueError, match="one camera per frame"):
        fit_dynamic_scene(frames, c2w[:-1], k, times, progress=False)


# ------------------------------------------------------------------------------------------------ CLI
FAST = ["--mode", "4d", "--size", str(SIZE), "--fit-config", "tiny", "--capacity", str(CAPACITY),
        "--iterations", "10", "--coarse-iterations", "10", "--video-frames", "3", "--video-format", "gif",
        "--grid-size", "2", "--no-progress"]


@pytest.mark.filterwarnings("ignore:os.fork")
def test_cli_4d_image_then_views_end_to_end(tiny_a, toy, tmp_path):
    scene = toy[0]
    image = tmp_path / "photo.png"
    Image.fromarray((scene.render(0.0, scene.camera(0.0), SIZE) * 255).astype(np.uint8)).save(image)
    out = tmp_path / "dyn"
    assert R.main(["--image", str(image), "--checkpoint", str(tiny_a), "--output", str(out), "--frames", str(T),
                   "--steps", "2", "--motion", "0.5", *FAST]) == 0
    files = {p.name for p in out.iterdir()}
    assert {"scene", "frames", "cameras.json", "video.gif", "time_view_grid.png", "preview.png",
            "metrics.json"} <= files
    cams = json.loads((out / "cameras.json").read_text())
    np.testing.assert_allclose(cams["times"], np.linspace(0, 1, T))
    assert len(cams["c2w"]) == T
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_frames"] == T and np.isfinite(metrics["fit"]["psnr"]) and metrics["generation_s"] > 0
    assert np.asarray(Image.open(out / "time_view_grid.png")).shape == (2 * SIZE, 2 * SIZE, 3)
    assert len(imageio.mimread(out / "video.gif")) == 3
    d = DynamicScene.load(out / "scene")
    assert int(np.asarray(d.canonical.active).sum()) > 0 and len(list((out / "scene" / "times").glob("*.ply"))) == T
    assert not list(tmp_path.glob(".dyn.tmp-*"))
    # the output is a --views clip again (times read from cameras.json); T = 12 frames at 32 px and 512 slots,
    # like the fit above, so both runs reuse its compiled training steps
    out2 = tmp_path / "dyn2"
    assert R.main(["--views", str(out), "--output", str(out2), "--export-times", "2", *FAST]) == 0
    assert len(list((out2 / "scene" / "times").glob("*.ply"))) == 2
    np.testing.assert_allclose(json.loads((out2 / "cameras.json").read_text())["times"], cams["times"])


def test_cli_4d_bad_input(toy, tmp_path, capsys):
    scene = toy[0]
    clip = tmp_path / "clip"
    (clip / "frames").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(clip / "frames" / f"frame_{i:03d}.png")
    cams = {"c2w": [scene.camera(0).tolist(), scene.camera(1).tolist()], "intrinsics": scene.intrinsics().tolist(),
            "times": [0.0, 1.5]}
    (clip / "cameras.json").write_text(json.dumps(cams))

    def fails(argv, pattern):
        with pytest.raises(SystemExit):
            R.main(argv)
        assert pattern in capsys.readouterr().err

    fails(["--views", str(clip), "--output", str(tmp_path / "o"), *FAST], "[0, 1]")
    cams["times"] = [0.0]
    (clip / "cameras.json").write_text(json.dumps(cams))
    fails(["--views", str(clip), "--output", str(tmp_path / "o"), *FAST], "one time per frame")
    (clip / "frames" / "frame_001.png").unlink()
    cams.update(c2w=cams["c2w"][:1], times=[0.0])
    (clip / "cameras.json").write_text(json.dumps(cams))
    fails(["--views", str(clip), "--output", str(tmp_path / "o"), *FAST], "at least 2")
    fails(["--images", "a.png", "b.png", "--cameras", "c.json", "--output", str(tmp_path / "o"), *FAST],
          "--images")
    assert not (tmp_path / "o").exists()
