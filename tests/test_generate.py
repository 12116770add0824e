"""`python -m genxd_jax.generate` end to end on the tiny checkpoint, its preprocessing and its error
messages."""

import json

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from genxd_jax import generate as G
from genxd_jax.geometry import orbit_trajectory

SIZE, FRAMES = 64, 4


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (50, 80, 4), dtype=np.uint8)
    rgba[:5, :5, 3] = 0  # transparent corner -> white
    Image.fromarray(rgba).save(d / "wide.png")
    Image.fromarray(rng.integers(0, 256, (90, 60, 3), dtype=np.uint8)).save(d / "tall.jpg")
    (d / "broken.png").write_bytes(b"not an image")
    return d


def base_args(tiny_a, out, *images):
    return [
        "--checkpoint",
        str(tiny_a),
        "--output",
        str(out),
        "--image",
        *map(str, images),
        "--size",
        str(SIZE),
        "--steps",
        "4",
        "--guidance",
        "2",
        "--no-progress",
    ]


@pytest.mark.filterwarnings("ignore:os.fork")  # imageio runs ffmpeg in a subprocess
def test_single_image_forward_4d_end_to_end(tiny_a, images, tmp_path, capsys):
    out = tmp_path / "run"
    argv = base_args(tiny_a, out, images / "wide.png") + [
        "--frames",
        str(FRAMES),
        "--camera",
        "forward",
        "--elevation",
        "10",
        "--azimuth",
        "-30",
        "30",
        "--mode",
        "4d",
        "--motion",
        "0.3",
        "--focal",
        "1.2",
    ]
    assert G.main(argv) == 0
    pngs = sorted((out / "frames").glob("*.png"))
    assert [p.name for p in pngs] == [f"frame_{i:03d}.png" for i in range(FRAMES)]
    assert all(Image.open(p).size == (SIZE, SIZE) for p in pngs)
    video = imageio.mimread(out / "video.mp4")
    assert len(video) == FRAMES and video[0].shape == (SIZE, SIZE, 3)
    assert Image.open(out / "preview.png").size == ((1 + FRAMES) * SIZE + 8, SIZE)
    cams = json.loads((out / "cameras.json").read_text())
    assert cams["context_index"] == [0] and cams["indicator"] == 2
    assert np.asarray(cams["c2w"]).shape == (FRAMES, 4, 4) and np.asarray(cams["w2c"]).shape == (FRAMES, 3, 4)
    # 50×80 covers 64² at scale 1.28 -> 102×64 before the crop: fx × 102/64, fy unchanged (§14.1).
    np.testing.assert_allclose(cams["intrinsics"][0][0][0], 1.2 * 102 / 64)
    np.testing.assert_allclose(cams["intrinsics"][0][1][1], 1.2)
    np.testing.assert_allclose(cams["fx"][0], 1.2 * 102)
    assert "video" in capsys.readouterr().out


def test_two_images_from_a_camera_file_as_gif(tiny_a, images, tmp_path):
    keys = orbit_trajectory(3, elevation=5, azimuth_range=(0, 90), radius=2)
    cam_file = tmp_path / "keys.json"
    cam_file.write_text(json.dumps({"c2w": keys.tolist(), "convention": "opencv"}))
    out = tmp_path / "run"
    argv = base_args(tiny_a, out, images / "wide.png", images / "tall.jpg") + [
        "--camera",
        str(cam_file),
        "--fit",
        "smooth",
        "--frames",
        str(FRAMES),
        "--mode",
        "3d",
        "--video-format",
        "gif",
        "--pad-to-square",
        "--context-index",
        "0",
        "3",
        "--sampler",
        "dpmpp2m",
        "--schedule",
        "40:0.1:10",
    ]
    assert G.main(argv) == 0
    assert len(list((out / "frames").glob("*.png"))) == FRAMES
    assert len(imageio.mimread(out / "video.gif")) == FRAMES
    cams = json.loads((out / "cameras.json").read_text())
    assert cams["context_index"] == [0, 3]
    assert (cams["sampler"], cams["schedule"]) == ("dpmpp2m", "40:0.1:10")
    np.testing.assert_allclose(np.asarray(cams["c2w"])[[0, -1]], keys[[0, -1]], atol=1e-9)
    # Round trip: the written cameras.json (w2c) is itself a valid camera file.
    c2w, _, _ = G.load_camera_file(out / "cameras.json")
    np.testing.assert_allclose(c2w, cams["c2w"], atol=1e-9)


def test_preprocessing_matches_crop_shim(images):
    img, (sx, sy) = G.preprocess_image(images / "wide.png", SIZE)
    assert img.shape == (SIZE, SIZE, 3) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    assert (sx, sy) == (102 / 64, 1.0)
    img, (sx, sy) = G.preprocess_image(images / "tall.jpg", SIZE, pad=True)  # 90×60 padded to 90×90
    assert sx == pytest.approx(60 / 90) and sy == pytest.approx(1.0)
    np.testing.assert_array_equal(img[:, :5], 0)  # black padding on the left
    white = G.read_image(images / "wide.png")[:5, :5]
    np.testing.assert_array_equal(white, 255)  # transparent pixels composited on white
    assert G.default_context_index(1, 12, "mid") == [6]
    assert G.default_context_index(3, 12, "first") == [0, 6, 11]


ERROR_CASES = {
    # name: (image names, extra arguments, expected message); "{tmp}" is the test's temporary folder.
    "unreadable image": (["broken.png"], [], "cannot read image"),
    "missing image": (["missing.png"], [], "image not found"),
    "too many views": (["wide.png", "tall.jpg", "wide.png"], ["--frames", "2"], "too many context views"),
    "camera at the pole": (["wide.png"], ["--elevation", "90"], "straight up or down"),
    "forward needs 4k frames": (["wide.png"], ["--camera", "forward", "--frames", "6"], "multiple of 4"),
    "reflected pose": (["wide.png"], ["--camera", "{tmp}/cam.json"], "reflection"),
    "missing camera file": (["wide.png"], ["--camera", "{tmp}/nofile.json"], "camera file not found"),
    "schedule not three numbers": (["wide.png"], ["--schedule", "fast"], "is not SIGMA_MAX:SIGMA_MIN:RHO"),
    "schedule out of order": (["wide.png"], ["--schedule", "0.1:1:7"], "0 < SIGMA_MIN < SIGMA_MAX"),
    "incomplete checkpoint": (["wide.png"], ["--checkpoint", "{tmp}/ckpt"], "incomplete GenXD checkpoint"),
}


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_clear_errors(tiny_a, images, tmp_path, capsys, name):
    names, extra, match = ERROR_CASES[name]
    (tmp_path / "cam.json").write_text(json.dumps([np.diag([1.0, 1, -1, 1]).tolist()] * 4))
    (tmp_path / "ckpt").mkdir()
    argv = base_args(tiny_a, tmp_path / "out", *(images / n for n in names))
    argv += [a.replace("{tmp}", str(tmp_path)) for a in extra]  # later options override earlier ones
    with pytest.raises(SystemExit) as exc:
        G.main(argv)
    assert exc.value.code == 2
    assert match in capsys.readouterr().err
