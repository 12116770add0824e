"""TFDS builders under data/: pack tiny scenes into ArrayRecord and read them back into the same pipeline."""

import importlib.util
import os
import pathlib

import numpy as np
import pytest

from genxd_jax.data import default_data_config, make_train_dataset, read_scene, source_config
from genxd_jax.data import fixtures as fx
from genxd_jax.data.images import load_frame
from genxd_jax.data.sources import PackedSceneSource

REPO = pathlib.Path(__file__).resolve().parents[1]


def _prepare_module():
    spec = importlib.util.spec_from_file_location("genxd_data_prepare", REPO / "data" / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("camvid")
    rng = np.random.default_rng(0)
    for i in range(3):
        c2w, k = fx.random_cameras(rng, 5)
        fx.write_colmap_scene(str(root / "raw" / f"clip{i}"), rng, c2w, k, height=40, width=60)
    c2w, k = fx.random_cameras(rng, 5)
    paths = fx.write_colmap_scene(str(root / "raw" / "clip_bad"), rng, c2w, k)
    os.remove(paths[2])  # a missing frame: skipped while packing
    prepare = _prepare_module()
    assert "camvid30k" in prepare.DATASETS and "objaverse_anim" in prepare.DATASETS
    out = prepare.prepare("camvid30k", str(root / "raw"), str(root / "tfds"), short_side=20)
    return root, out


def test_packed_scenes_round_trip(packed):
    root, out = packed
    assert any(name.endswith(".array_record-00000-of-00001") for name in os.listdir(out))
    source = PackedSceneSource(out)
    assert len(source) == 3  # the bad clip was skipped
    by_name = {source.get(i).name: source.get(i) for i in range(len(source))}
    assert sorted(by_name) == ["clip0", "clip1", "clip2"]
    for name, scene in by_name.items():
        raw = read_scene("camvid30k", root / "raw" / name)
        np.testing.assert_allclose(scene.c2w, raw.c2w, atol=1e-12)
        np.testing.assert_allclose(scene.intrinsics, raw.intrinsics, atol=1e-12)
        assert scene.indicator == 2 and scene.motion_strength is None and len(scene) == 5
        frame = load_frame(scene.frames[0])
        assert frame.shape == (20, 30, 3)  # shorter side re-encoded at 20 px, aspect kept
        original = load_frame(raw.frames[0])
        small = original.reshape(20, 2, 30, 2, 3).mean(axis=(1, 3))
        assert np.abs(frame.astype(float) - small).mean() < 12  # the same picture


def test_pipeline_reads_packed_source(packed):
    _, out = packed
    cfg = default_data_config()
    cfg.num_frames, cfg.resolution, cfg.batch_size = 4, 16, 2
    cfg.sources = (source_config("camvid30k", "tfds", out),)
    it = iter(make_train_dataset(cfg, seed=0, process_index=0, process_count=1))
    batch = next(it)
    assert batch["images"].shape == (2, 4, 16, 16, 3) and np.all(batch["indicator"] == 2)
    state = it.get_state()
    expected = next(it)
    restored = iter(make_train_dataset(cfg, seed=0, process_index=0, process_count=1))
    restored.set_state(state)
    np.testing.assert_array_equal(next(restored)["images"], expected["images"])
