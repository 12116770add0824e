"""`python -m genxd_jax.evaluate`: every subcommand end to end on tiny inputs with random-weight networks.

The reports' numbers are checked against the library computed directly on the same frames (FID, FVD,
CLIP-I); bad input (missing weights, empty folders, clips of different lengths, pickles) gives exit code 2
and a message naming the option or file.
"""

from __future__ import annotations

import json
import pathlib

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from genxd_jax import evaluate
from genxd_jax.evaluation import clip_similarity, frechet_distance, load_clip, load_i3d, load_inception
from genxd_jax.evaluation.clip import CLIPVisionConfig, CLIPVisionTower, clip_state

SIZE, FRAMES = 32, 9  # I3D at 32² (final pool 2x1x1) needs >= 9 frames


def _palette_clip(rng, frames=FRAMES, size=SIZE) -> np.ndarray:
    """(T, S, S, 3) uint8 from an 8-colour palette, so that GIF storage is lossless."""
    palette = rng.integers(0, 256, (8, 3), dtype=np.uint8)
    return palette[rng.integers(0, 8, (frames, size, size))]


def _write_frames(folder: pathlib.Path, clip: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for i, f in enumerate(clip):
        Image.fromarray(f).save(folder / f"frame_{i:03d}.png")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random-weight I3D, FID Inception and CLIP files in the layouts the loaders read."""
    from test_metrics_video_clip import random_i3d_tensors  # tests/ is on sys.path (rootdir conftest)

    from genxd_jax.evaluation.inception import _expected_shapes

    d = tmp_path_factory.mktemp("weights")
    rng = np.random.default_rng(0)
    save_file(random_i3d_tensors(1), str(d / "i3d.safetensors"))
    inc = {}
    for k, shape in _expected_shapes().items():
        if k.endswith("running_var"):
            inc[k] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif k.endswith("bn.weight"):
            inc[k] = np.ones(shape, np.float32)
        elif len(shape) == 4:
            inc[k] = (rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(np.float32)
        else:
            inc[k] = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    save_file(inc, str(d / "inception.safetensors"))
    from flax import nnx

    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                           patch_size=8, image_size=32, projection_dim=16)
    tower = CLIPVisionTower(cfg, rngs=nnx.Rngs(3))
    inverse = {"vision_model.embeddings.patch_embedding.weight": lambda a: a.transpose(3, 2, 0, 1)}
    tensors = {}
    for key, (var, _) in clip_state(tower).items():
        a = np.asarray(var[...])
        tensors[key] = inverse[key](a) if key in inverse else (a.T if a.ndim == 2 and "embedding" not in key else a)
    tensors["text_model.embeddings.token_embedding.weight"] = np.zeros((10, 8), np.float32)  # ignored
    (d / "clip").mkdir()
    save_file(tensors, str(d / "clip" / "model.safetensors"))
    (d / "clip" / "config.json").write_text(json.dumps({"vision_config": {"num_attention_heads": 4},
                                                        "projection_dim": 16}))
    return d


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(1)
    gen = [_palette_clip(rng) for _ in range(2)]
    ref = [_palette_clip(rng) for _ in range(2)]
    _write_frames(d / "gen" / "a", gen[0])
    _write_frames(d / "gen" / "b", gen[1])
    (d / "ref").mkdir()
    iio.imwrite(d / "ref" / "a.gif", ref[0], loop=0)  # a video file ...
    _write_frames(d / "ref" / "b", ref[1])  # ... and a folder of frames
    return d, np.stack(gen), np.stack(ref)


def _run(capsys, *argv) -> tuple[int, str]:
    code = evaluate.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_video_fvd_end_to_end(weights, clips, tmp_path, capsys):
    d, gen, ref = clips
    out = tmp_path / "video"
    code, text = _run(capsys, "video", "--generated", d / "gen", "--reference", d / "ref", "--i3d",
                      weights / "i3d.safetensors", "--metrics", "fvd", "--size", SIZE, "--fvd-size", SIZE,
                      "--batch-size", 2, "--name", "tiny", "--output", out, "--no-progress")
    assert code == 0, text
    report = json.loads((out / "report.json").read_text())
    table = (out / "table.md").read_text()
    assert report["frames"] == FRAMES and report["num_generated"] == report["num_reference"] == 2
    assert "fid" not in report
    i3d = load_i3d(weights / "i3d.safetensors", size=SIZE)
    expected_fvd = frechet_distance(i3d.features(gen / 255.0, 2), i3d.features(ref / 255.0, 2))
    assert report["fvd"] == pytest.approx(expected_fvd, rel=1e-4)
    assert table.splitlines()[0] == "| Method | FID ↓ | FVD ↓ |"
    assert f"| tiny | — | {report['fvd']:.2f} |" in table
    assert "| GenXD (3 Views) (paper, Table 2) | 55.64 | 490.50 |" in table


def _low_rank_frechet(a, b) -> float:
    """The Fréchet distance for N << D samples, exactly: with S_a = A Aᵀ and S_b = B Bᵀ (A, B the centred
    features / sqrt(N - 1)), the eigenvalues of S_a S_b are those of (AᵀB)(AᵀB)ᵀ, so Tr sqrtm(S_a S_b) is the
    nuclear norm of AᵀB (no 2048² matrix square root)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ca, cb = (a - a.mean(0)) / np.sqrt(len(a) - 1), (b - b.mean(0)) / np.sqrt(len(b) - 1)
    diff = a.mean(0) - b.mean(0)
    return float(diff @ diff + np.sum(ca * ca) + np.sum(cb * cb)
                 - 2 * np.linalg.svd(ca @ cb.T, compute_uv=False).sum())


def test_video_fid_end_to_end(weights, tmp_path, capsys, monkeypatch):
    """FID over every frame of every clip (2 one-frame clips per set, 40² resized to 32²). scipy's sqrtm of a
    2048² matrix takes tens of CPU seconds, so the distance is replaced by the exact low-rank form (checked
    against `frechet_distance` on 16-d features below); the frames fed to the Inception are checked against
    the library's features of the same frames."""
    import genxd_jax.evaluation.frechet as frechet

    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((3, 16)), rng.standard_normal((4, 16)) + 0.5
    assert _low_rank_frechet(x, y) == pytest.approx(frechet.frechet_distance(x, y), rel=1e-6)
    seen = []
    monkeypatch.setattr(frechet, "frechet_distance", lambda a, b: seen.append((a, b)) or _low_rank_frechet(a, b))
    frames = {}
    for name in ("gen", "ref"):
        frames[name] = rng.integers(0, 256, (2, 40, 40, 3), dtype=np.uint8)
        for i, f in enumerate(frames[name]):
            _write_frames(tmp_path / name / f"clip{i}", f[None])
    out = tmp_path / "video"
    code, text = _run(capsys, "video", "--generated", tmp_path / "gen", "--reference", tmp_path / "ref",
                      "--inception", weights / "inception.safetensors", "--metrics", "fid", "--size", SIZE,
                      "--output", out, "--no-progress")
    assert code == 0, text
    report = json.loads((out / "report.json").read_text())
    assert report["fid_images"] == [2, 2] and report["fid_resize"] == "pytorch" and "fvd" not in report
    inc = load_inception(weights / "inception.safetensors")
    feats = [inc.features_of(evaluate.resize_square(frames[n], SIZE) / 255.0, batch_size=1, progress=False)
             for n in ("gen", "ref")]
    assert len(seen) == 1
    np.testing.assert_allclose(seen[0][0], feats[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(seen[0][1], feats[1], rtol=1e-5, atol=1e-5)
    assert report["fid"] == pytest.approx(_low_rank_frechet(*feats), rel=1e-4)
    assert f"| GenXD | {report['fid']:.2f} | — |" in (out / "table.md").read_text()


def test_video_bad_input(weights, clips, tmp_path, capsys):
    d, gen, _ = clips
    common = ["--size", SIZE, "--fvd-size", SIZE, "--output", tmp_path / "o", "--no-progress", "--metrics", "fvd"]
    code, text = _run(capsys, "video", "--generated", d / "gen", "--reference", d / "ref", *common)
    assert code == 2 and "--i3d is required" in text and "convert_metrics i3d" in text
    (tmp_path / "empty").mkdir()
    code, text = _run(capsys, "video", "--generated", tmp_path / "empty", "--reference", d / "ref",
                      "--i3d", weights / "i3d.safetensors", *common)
    assert code == 2 and "holds no clips" in text and "empty" in text
    short = tmp_path / "short"
    _write_frames(short / "a", gen[0][:FRAMES - 2])
    _write_frames(short / "b", gen[1][:FRAMES - 2])
    code, text = _run(capsys, "video", "--generated", short, "--reference", d / "ref",
                      "--i3d", weights / "i3d.safetensors", *common)
    assert code == 2 and "mismatched clip lengths" in text
    code, text = _run(capsys, "video", "--generated", d / "gen", "--reference", d / "ref", "--frames", FRAMES + 1,
                      "--i3d", weights / "i3d.safetensors", *common)
    assert code == 2 and "fewer than --frames" in text
    (tmp_path / "i3d.pt").write_bytes(b"never unpickled")
    code, text = _run(capsys, "video", "--generated", d / "gen", "--reference", d / "ref",
                      "--i3d", tmp_path / "i3d.pt", *common)
    assert code == 2 and "never unpickled" in text
    assert not (tmp_path / "o").exists()


def test_clip_i_views_video_and_ply(weights, tmp_path, capsys):
    rng = np.random.default_rng(2)
    reference = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    Image.fromarray(reference).save(tmp_path / "ref.png")
    views = _palette_clip(rng, frames=3, size=36)
    _write_frames(tmp_path / "views", views)
    iio.imwrite(tmp_path / "views.gif", views, loop=0)
    clip = load_clip(weights / "clip" / "model.safetensors")
    expected = 100 * clip_similarity(reference / 255.0, views / 255.0, clip)
    for src, protocol in ((tmp_path / "views", "3d"), (tmp_path / "views.gif", "4d")):
        out = tmp_path / f"out_{protocol}"
        code, text = _run(capsys, "clip-i", "--reference", tmp_path / "ref.png", "--views", src, "--clip",
                          weights / "clip" / "model.safetensors", "--protocol", protocol, "--output", out,
                          "--no-progress")
        assert code == 0, text
        report = json.loads((out / "report.json").read_text())
        assert report["num_views"] == 3 and len(report["per_view_cosine"]) == 3
        assert report["clip_i"] == pytest.approx(expected, abs=1e-3)
        table = (out / "table.md").read_text()
        assert f"| GenXD | {report['clip_i']:.2f} |" in table
        assert ("(paper, Table 6)" if protocol == "3d" else "(paper, Table 3)") in table

    # --ply: 7 orbit views of a lifted scene rendered with genxd_jax.lift.render
    from genxd_jax.lift.gaussians import Gaussians
    from genxd_jax.lift.ply import save_ply

    g = Gaussians.create(rng.uniform(-0.5, 0.5, (64, 3)), rng.uniform(0, 1, (64, 3)), opacity=0.8)
    save_ply(g, tmp_path / "scene.ply")
    out = tmp_path / "out_ply"
    code, text = _run(capsys, "clip-i", "--reference", tmp_path / "ref.png", "--ply", tmp_path / "scene.ply",
                      "--render-size", 32, "--clip", weights / "clip" / "model.safetensors", "--output", out,
                      "--no-progress")
    assert code == 0, text
    report = json.loads((out / "report.json").read_text())
    assert report["num_views"] == 7
    renders = evaluate.render_orbit(tmp_path / "scene.ply", 7, 0.0, 2.0, 32, 49.1, (0.0, 0.0, 0.0))
    assert renders.shape == (7, 32, 32, 3) and renders.max() > 0.05  # the scene is in view
    assert report["clip_i"] == pytest.approx(100 * clip_similarity(reference / 255.0, renders, clip), abs=1e-3)


def test_clip_i_bad_input(weights, tmp_path, capsys):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ref.png")
    (tmp_path / "empty").mkdir()
    base = ["clip-i", "--reference", tmp_path / "ref.png", "--output", tmp_path / "o", "--no-progress"]
    code, text = _run(capsys, *base, "--views", tmp_path / "empty")
    assert code == 2 and "--clip is required" in text
    code, text = _run(capsys, *base, "--views", tmp_path / "empty", "--clip", weights / "clip" / "model.safetensors")
    assert code == 2 and "empty" in text
    code, text = _run(capsys, *base, "--clip", weights / "clip" / "model.safetensors")
    assert code == 2 and "exactly one of --views" in text


def test_fewview_subcommand_dispatches(tmp_path, capsys):
    """The few-view protocol (genxd_jax.evaluation.fewview) through the CLI on a tiny synthetic scene."""
    report_path = tmp_path / "fewview.json"
    code, text = _run(capsys, "fewview", "--scenes", "synthetic:3d/1000/0", "--size", 16, "--iterations", 2,
                      "--report", report_path, "--no-progress")
    assert code == 0, text
    report = json.loads(report_path.read_text())
    assert report and (tmp_path / "fewview.md").read_text().startswith("|")
