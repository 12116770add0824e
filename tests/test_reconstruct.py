"""`python -m genxd_jax.reconstruct` end to end on the tiny checkpoint (each input mode), its atomic output and
its error messages. Tiny settings: 32 px, 2 denoising steps, a few fit iterations."""

import json

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from genxd_jax import reconstruct as R
from genxd_jax.data.synthetic import make_synthetic_scene
from genxd_jax.lift import load_ply

SIZE = 32
# Every fit below sees 6 views (few-view 3 + 3 generated, single view 3 anchors + 3 interpolated, --views of
# the few-view output, 6 inputs with --no-generate), and every generation call has F = 3 frames, so the fit step
# and the sampler compile once for the whole module.
FAST = ["--size", str(SIZE), "--fit-config", "tiny", "--capacity", "1024", "--steps", "2", "--frames", "3",
        "--num-context", "2", "--iterations", "20", "--video-frames", "3", "--video-format", "gif", "--no-progress"]


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    """Three input views (+ cameras.json) and a held-out folder of two views of a procedural scene."""
    d = tmp_path_factory.mktemp("inputs")
    p = make_synthetic_scene("3d", 7, 0, size=SIZE, num_frames=24)
    k = p.intrinsics()[0]
    for i, t in enumerate((0, 3, 6, 1, 2, 4)):
        Image.fromarray(p.render(t)).save(d / f"view{i}.png")
    (d / "cams.json").write_text(json.dumps({"c2w": p.c2w[[0, 3, 6]].tolist(), "intrinsics": k.tolist()}))
    (d / "cams6.json").write_text(json.dumps({"c2w": p.c2w[[0, 3, 6, 1, 2, 4]].tolist(), "intrinsics": k.tolist()}))
    held = d / "heldout"
    (held / "frames").mkdir(parents=True)
    for i, t in enumerate((1, 5)):
        Image.fromarray(p.render(t)).save(held / "frames" / f"frame_{i:03d}.png")
    (held / "cameras.json").write_text(json.dumps({"c2w": p.c2w[[1, 5]].tolist(), "intrinsics": [k.tolist()] * 2}))
    return d, p


def run_cli(argv):
    assert R.main(argv) == 0


def check_scene(out, num_views, kinds_inputs):
    files = {p.name for p in out.iterdir()}
    assert {"point_cloud.ply", "preview.png", "cameras.json", "metrics.json", "frames", "video.gif"} <= files
    g = load_ply(out / "point_cloud.ply")
    assert int(np.asarray(g.active).sum()) > 0
    cams = json.loads((out / "cameras.json").read_text())
    assert len(cams["c2w"]) == num_views == len(list((out / "frames").glob("*.png")))
    assert cams["kind"].count("input") == kinds_inputs
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_views"] == num_views and np.isfinite(metrics["fit"]["psnr"])
    preview = np.asarray(Image.open(out / "preview.png"))
    assert preview.shape == (2 * SIZE, min(8, num_views) * SIZE, 3)
    assert len(imageio.mimread(out / "video.gif")) == 3
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))  # the temporary folder was renamed away
    return metrics


@pytest.mark.filterwarnings("ignore:os.fork")
def test_few_view_then_views_mode_end_to_end(tiny_a, scene_files, tmp_path):
    d, _ = scene_files
    out = tmp_path / "few"
    run_cli(["--images", *(str(d / f"view{i}.png") for i in range(3)), "--cameras", str(d / "cams.json"),
             "--checkpoint", str(tiny_a), "--output", str(out), "--path-frames", "3", "--heldout",
             str(d / "heldout"), *FAST])
    metrics = check_scene(out, 3 + 3, 3)
    assert metrics["num_generated"] == 3 and np.isfinite(metrics["heldout"]["psnr"])
    assert len(metrics["heldout"]["psnr_per_view"]) == 2
    # the output folder is itself a --views folder: refit it without generating
    out2 = tmp_path / "views"
    run_cli(["--views", str(out), "--output", str(out2), *FAST])
    check_scene(out2, 6, 6)
    cams1 = json.loads((out / "cameras.json").read_text())
    cams2 = json.loads((out2 / "cameras.json").read_text())
    np.testing.assert_allclose(cams1["c2w"], cams2["c2w"])
    np.testing.assert_allclose(cams1["intrinsics"], cams2["intrinsics"])


@pytest.mark.filterwarnings("ignore:os.fork")
def test_single_view_and_no_generate(tiny_a, scene_files, tmp_path):
    d, _ = scene_files
    out = tmp_path / "single"
    run_cli(["--image", str(d / "view0.png"), "--checkpoint", str(tiny_a), "--output", str(out), "--interp", "1",
             "--elevation", "20", "--radius", "3.5", *FAST])
    check_scene(out, 3 + 3, 1)  # 3 anchors (input + 2 generated) and 3 interpolated views
    out2 = tmp_path / "baseline"
    run_cli(["--images", *(str(d / f"view{i}.png") for i in range(6)), "--cameras", str(d / "cams6.json"),
             "--no-generate", "--output", str(out2), *FAST])  # no checkpoint needed
    check_scene(out2, 6, 6)


def test_failure_leaves_no_output(scene_files, tmp_path, monkeypatch):
    d, _ = scene_files
    out = tmp_path / "atomic"

    def broken_video(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(R, "write_video", broken_video)
    with pytest.raises(RuntimeError, match="disk full"):
        R.main(["--images", *(str(d / f"view{i}.png") for i in range(6)), "--cameras", str(d / "cams6.json"),
                "--no-generate", "--output", str(out), *FAST])
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_unless_overwrite(scene_files, tmp_path, capsys):
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    d, _ = scene_files
    with pytest.raises(SystemExit):
        R.main(["--images", str(d / "view0.png"), str(d / "view1.png"), "--cameras", str(d / "cams.json"),
                "--output", str(out), "--no-generate", *FAST])
    assert "already exists" in capsys.readouterr().err and (out / "keep.txt").exists()


def _error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        R.main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


def test_bad_inputs_name_the_file_or_field(scene_files, tmp_path, capsys):
    d, p = scene_files
    imgs = [str(d / f"view{i}.png") for i in range(3)]
    out = str(tmp_path / "never")
    base = ["--output", out, "--no-generate", *FAST]

    two = tmp_path / "two.json"
    two.write_text(json.dumps({"c2w": p.c2w[[0, 3]].tolist()}))
    err = _error(["--images", *imgs, "--cameras", str(two), *base], capsys)
    assert "view2.png has no camera" in err and str(two) in err

    nan = p.c2w[[0, 3, 6]].copy()
    nan[1, 0, 3] = np.nan
    bad = tmp_path / "nan.json"
    bad.write_text(json.dumps({"c2w": nan.tolist()}))  # JSON NaN, as Python writes it
    err = _error(["--images", *imgs, "--cameras", str(bad), *base], capsys)
    assert "non-finite" in err and str(bad) in err

    singular = p.c2w[[0, 3, 6]].copy()
    singular[2, :3, :3] = 0.0
    sing = tmp_path / "singular.json"
    sing.write_text(json.dumps({"c2w": singular.tolist()}))
    err = _error(["--images", *imgs, "--cameras", str(sing), *base], capsys)
    assert "orthonormal" in err and str(sing) in err

    assert "at least 2 images" in _error(["--images", imgs[0], "--cameras", str(two), *base], capsys)
    assert "needs --cameras" in _error(["--images", *imgs, *base], capsys)
    assert "--no-generate needs at least 2" in _error(["--image", imgs[0], *base], capsys)
    assert "--checkpoint is required" in _error(["--image", imgs[0], "--output", out, *FAST], capsys)
    one = tmp_path / "one_view"
    (one / "frames").mkdir(parents=True)
    Image.open(imgs[0]).save(one / "frames" / "frame_000.png")
    Image.open(imgs[1]).save(one / "frames" / "frame_001.png")
    cams = {"c2w": p.c2w[[0, 3]].tolist(), "intrinsics": p.intrinsics()[0].tolist()}
    (one / "cameras.json").write_text(json.dumps(cams))
    Image.open(imgs[2]).save(one / "frames" / "frame_002.png")  # a frame without a camera
    err = _error(["--views", str(one), *base], capsys)
    assert "frame_002.png has no camera" in err
    missing = _error(["--images", str(d / "nope.png"), *imgs[1:], "--cameras", str(d / "cams.json"), *base], capsys)
    assert "nope.png" in missing and "not found" in missing
    assert not (tmp_path / "never").exists()


def test_diverged_fit_keeps_the_last_good_gaussians(scene_files, tmp_path, monkeypatch, capsys):
    import genxd_jax.lift.fit as fit_module
    from genxd_jax.lift import Gaussians

    last_good = Gaussians.create(np.array([[0.0, 0.0, 0.3], [0.1, 0.2, 0.3]]), scales=0.05)

    def diverging(*a, **k):
        raise fit_module.FitDivergedError(17, last_good)

    monkeypatch.setattr(fit_module, "fit_scene", diverging)
    d, _ = scene_files
    out = tmp_path / "diverged"
    err = _error(["--images", *(str(d / f"view{i}.png") for i in range(3)), "--cameras", str(d / "cams.json"),
                  "--no-generate", "--output", str(out), *FAST], capsys)
    saved = tmp_path / "diverged.last_good.ply"
    assert "iteration 17" in err and str(saved) in err
    assert not out.exists()
    np.testing.assert_array_equal(np.asarray(load_ply(saved).means), np.asarray(last_good.means))


def test_sigterm_removes_the_temporary_folder(scene_files, tmp_path, monkeypatch):
    import os
    import signal

    d, _ = scene_files
    out = tmp_path / "terminated"

    def killed_while_fitting(*a, **k):
        assert list(tmp_path.glob(".terminated.tmp-*"))  # the scene is being built in a temporary folder
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(R, "fit_views", killed_while_fitting)
    with pytest.raises(SystemExit) as e:
        R.main(["--images", *(str(d / f"view{i}.png") for i in range(6)), "--cameras", str(d / "cams6.json"),
                "--no-generate", "--output", str(out), *FAST])
    assert e.value.code == 128 + signal.SIGTERM
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is not R._on_sigterm  # the previous handler is back
