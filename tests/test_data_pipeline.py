"""The grain training pipeline: batch contract, mixtures, determinism, checkpointed state, process shards."""

import json

import numpy as np
import pytest

from genxd_jax.data import (
    dataset_names,
    default_data_config,
    make_eval_scenes,
    make_train_dataset,
    source_config,
)
from genxd_jax.data import fixtures as fx


def tiny_config(**overrides):
    cfg = default_data_config()
    cfg.num_frames, cfg.resolution, cfg.batch_size = 4, 16, 3
    for src in cfg.sources:
        src.num_scenes = 50
        src.num_source_frames = 12
    cfg.update(overrides)
    return cfg


def take(it, n):
    return [next(it) for _ in range(n)]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_default_config_fields():
    cfg = default_data_config()
    assert cfg.sources[0].format == "synthetic" and not cfg.sources[0].path.startswith("/")
    assert dataset_names(cfg) == ["synthetic_3d", "synthetic_4d"]
    for field in (
        "num_frames",
        "resolution",
        "batch_size",
        "single_view_ratio",
        "max_context_views",
        "frame_stride",
        "worker_count",
        "max_bad_fraction",
        "seed",
    ):
        assert field in cfg


def test_batch_contract():
    cfg = tiny_config()
    it = iter(make_train_dataset(cfg, seed=0, process_index=0, process_count=1))
    for batch in take(it, 6):
        b, f, s = 3, 4, 16
        expected = {
            "images": ((b, f, s, s, 3), np.float32),
            "c2w": ((b, f, 4, 4), np.float32),
            "intrinsics": ((b, f, 3, 3), np.float32),
            "indicator": ((b,), np.int32),
            "motion_strength": ((b,), np.float32),
            "context_mask": ((b, f), np.bool_),
            "dataset_id": ((b,), np.int32),
            "scene_index": ((b,), np.int32),
        }
        assert set(batch) == set(expected)
        for key, (shape, dtype) in expected.items():
            assert batch[key].shape == shape and batch[key].dtype == dtype, key
        assert 0.0 <= batch["images"].min() and batch["images"].max() <= 1.0
        for i in range(b):
            mask = batch["context_mask"][i]
            assert 1 <= mask.sum() <= min(cfg.max_context_views, f - 1)
            ref = int(np.argmax(mask))
            np.testing.assert_allclose(batch["c2w"][i, ref], np.eye(4), atol=1e-6)
            assert np.linalg.norm(batch["c2w"][i, :, :3, 3], axis=-1).max() == pytest.approx(1.0, abs=1e-5)
            rot = batch["c2w"][i, :, :3, :3]
            np.testing.assert_allclose(
                rot @ np.swapaxes(rot, -1, -2), np.broadcast_to(np.eye(3), rot.shape), atol=1e-5
            )
            indicator = {0: 0, 1: 2}[int(batch["dataset_id"][i])]
            assert batch["indicator"][i] == indicator
            assert (batch["motion_strength"][i] > 0) == (indicator == 2)
        np.testing.assert_allclose(batch["intrinsics"][..., 2, 2], 1.0)


def test_determinism_and_seed():
    cfg = tiny_config()
    a = take(iter(make_train_dataset(cfg, seed=5, process_index=0, process_count=1)), 3)
    b = take(iter(make_train_dataset(cfg, seed=5, process_index=0, process_count=1)), 3)
    c = take(iter(make_train_dataset(cfg, seed=6, process_index=0, process_count=1)), 3)
    assert_batches_equal(a, b)
    assert not all(np.array_equal(x["images"], y["images"]) for x, y in zip(a, c, strict=True))


def test_mixture_proportions():
    cfg = tiny_config(batch_size=8)
    cfg.sources = (
        source_config("a3d", "synthetic", "3d", 3.0, num_scenes=20, num_source_frames=8),
        source_config("b4d", "synthetic", "4d", 1.0, num_scenes=20, num_source_frames=8),
    )
    cfg.resolution = 8
    it = iter(make_train_dataset(cfg, seed=0, process_index=0, process_count=1))
    ids = np.concatenate([b["dataset_id"] for b in take(it, 10)])
    assert abs(np.mean(ids == 0) - 0.75) <= 0.02


@pytest.mark.parametrize("workers", [0, 1])
def test_restored_iterator_gives_identical_batches(workers):
    cfg = tiny_config(worker_count=workers)
    ds = make_train_dataset(cfg, seed=1, process_index=0, process_count=1)
    it = iter(ds)
    take(it, 2)
    state = json.loads(json.dumps(it.get_state()))  # what a checkpoint stores
    expected = take(it, 3)
    restored = iter(make_train_dataset(cfg, seed=1, process_index=0, process_count=1))
    restored.set_state(state)
    assert_batches_equal(take(restored, 3), expected)


def test_process_batches_concatenate_to_the_single_process_batch():
    """P processes with batch b read exactly the rows of one process with batch P·b: the data stream does not
    depend on the process count (what makes a multi-process run equal a single-process one)."""
    cfg = tiny_config(shuffle=True)
    for src in cfg.sources:
        src.num_scenes = 5
    per_process = [take(iter(make_train_dataset(cfg, seed=0, process_index=pi, process_count=2)), 3)
                   for pi in range(2)]
    single_cfg = tiny_config(shuffle=True)
    for src in single_cfg.sources:
        src.num_scenes = 5
    single_cfg.batch_size = 2 * cfg.batch_size
    single = take(iter(make_train_dataset(single_cfg, seed=0, process_index=0, process_count=1)), 3)
    for k in range(3):
        for key in ("images", "c2w", "scene_index", "dataset_id", "context_mask"):
            joined = np.concatenate([per_process[0][k][key], per_process[1][k][key]])
            np.testing.assert_array_equal(joined, single[k][key], err_msg=f"batch {k} {key}")
    assert not np.array_equal(per_process[0][0]["images"], per_process[1][0]["images"])
    with pytest.raises(ValueError, match="process_index"):
        make_train_dataset(cfg, seed=0, process_index=2, process_count=2)


def test_jpeg_scene_source_with_proxy_motion(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        c2w, k = fx.random_cameras(rng, 6)
        fx.write_colmap_scene(str(tmp_path / "camvid" / f"clip{i}"), rng, c2w, k, height=20, width=30)
    cfg = tiny_config()
    cfg.sources = (source_config("camvid30k", "camvid30k", str(tmp_path / "camvid")),)
    it = iter(make_train_dataset(cfg, seed=0, process_index=0, process_count=1))
    batch = next(it)
    assert batch["images"].shape == (3, 4, 16, 16, 3)
    assert np.all(batch["indicator"] == 2) and np.all(np.isfinite(batch["motion_strength"]))
    assert np.all(batch["motion_strength"] >= 0)


def test_eval_scenes_are_held_out_and_deterministic():
    cfg = tiny_config()
    a = make_eval_scenes(cfg, num_scenes=2)
    b = make_eval_scenes(cfg, num_scenes=2)
    assert len(a) == 4
    for x, y in zip(a, b, strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
        assert x["images"].shape == (4, 16, 16, 3) and x["images"].dtype == np.float32
        assert x["context_mask"].tolist() == [True, False, False, False]
        np.testing.assert_allclose(x["c2w"][0], np.eye(4), atol=1e-6)
    assert [int(x["indicator"]) for x in a] == [0, 0, 2, 2]
    train = next(iter(make_train_dataset(cfg, seed=0, process_index=0, process_count=1)))
    assert not any(np.array_equal(e["images"], t) for e in a for t in train["images"])
