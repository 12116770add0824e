"""Bad input is skipped with a counted reason, and a run stops past the configured bad fraction."""

import os

import numpy as np
import pytest

from genxd_jax.data import (
    BadSceneError,
    DataQualityError,
    default_data_config,
    iterator_metrics,
    make_train_dataset,
    read_scene,
    source_config,
)
from genxd_jax.data import fixtures as fx
from genxd_jax.data.images import load_frame


def _re10k(root, name, rng, n=6, edit=None):
    c2w, k = fx.random_cameras(rng, n)
    if edit is not None:
        edit(c2w, k)
    txt = os.path.join(root, f"{name}.txt")
    paths = fx.write_re10k(txt, rng, c2w, k, height=20, width=20)
    return txt, paths


def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def make_bad_scenes(root, rng):
    """One re10k scene per bad-input case; returns {reason: txt path}."""
    cases = {}
    cases["nonfinite_pose"], _ = _re10k(root, "nan", rng, edit=lambda c, k: c.__setitem__((2, 0, 3), np.nan))
    cases["singular_pose"], _ = _re10k(
        root, "singular", rng, edit=lambda c, k: c.__setitem__((1, slice(0, 3), 0), 0)
    )
    cases["bad_intrinsics"], _ = _re10k(
        root, "zerofocal", rng, edit=lambda c, k: k.__setitem__((3, 0, 0), 0.0)
    )
    neg, _ = _re10k(root, "negfocal", rng, edit=lambda c, k: k.__setitem__((0, 1, 1), -0.5))
    cases["too_few_frames"], _ = _re10k(root, "short", rng, n=2)
    txt, paths = _re10k(root, "missing", rng)
    os.remove(paths[3])
    cases["missing_frame"] = txt
    txt, paths = _re10k(root, "corrupt", rng)
    for p in paths:
        _truncate(p)
    cases["corrupt_image"] = txt
    return cases, neg


def test_each_bad_case_has_its_reason(tmp_path):
    rng = np.random.default_rng(0)
    cases, neg = make_bad_scenes(str(tmp_path), rng)
    for reason in ("nonfinite_pose", "singular_pose", "bad_intrinsics", "missing_frame"):
        with pytest.raises(BadSceneError) as err:
            read_scene("re10k", cases[reason])
        assert err.value.reason == reason
    with pytest.raises(BadSceneError) as err:
        read_scene("re10k", neg)
    assert err.value.reason == "bad_intrinsics"
    # too few frames and corrupt images are only detectable per example: the scene itself reads
    assert len(read_scene("re10k", cases["too_few_frames"])) == 2
    scene = read_scene("re10k", cases["corrupt_image"])
    with pytest.raises(BadSceneError) as err:
        load_frame(scene.frames[0])
    assert err.value.reason == "corrupt_image"


def test_corrupt_bytes_and_malformed_camera_files(tmp_path):
    with pytest.raises(BadSceneError, match="corrupt_image"):
        load_frame(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    txt = tmp_path / "x.txt"
    txt.write_text("https://youtube\n1 2 3\n")
    os.makedirs(tmp_path / "x")
    with pytest.raises(BadSceneError, match="bad_layout"):
        read_scene("re10k", txt)
    rng = np.random.default_rng(0)
    c2w, k = fx.random_cameras(rng, 3)
    fx.write_colmap_scene(str(tmp_path / "clip"), rng, c2w, k)
    _truncate(tmp_path / "clip" / "0" / "images.bin")
    with pytest.raises(BadSceneError, match="bad_layout"):
        read_scene("camvid30k", tmp_path / "clip")
    c2w[1, 0, 3] = np.nan  # a NaN pose written into images.bin
    fx.write_colmap_scene(str(tmp_path / "clip2"), rng, c2w, k)
    with pytest.raises(BadSceneError, match="nonfinite_pose"):
        read_scene("camvid30k", tmp_path / "clip2")


def _config(root, max_bad_fraction, min_examples=5):
    cfg = default_data_config()
    cfg.num_frames, cfg.resolution, cfg.batch_size = 4, 16, 2
    cfg.sources = (source_config("re10k", "re10k", str(root)),)
    cfg.max_bad_fraction, cfg.bad_fraction_min_examples = max_bad_fraction, min_examples
    return cfg


def test_pipeline_skips_and_counts_every_reason(tmp_path):
    rng = np.random.default_rng(1)
    cases, _ = make_bad_scenes(str(tmp_path), rng)
    good = [_re10k(str(tmp_path), f"good{i}", rng)[0] for i in range(2)]
    cfg = _config(tmp_path, max_bad_fraction=0.95)
    it = iter(make_train_dataset(cfg, seed=0, process_index=0, process_count=1))
    batches = [next(it) for _ in range(6)]
    paths = sorted([*cases.values(), *good, str(tmp_path / "negfocal.txt")])
    good_indices = {paths.index(g) for g in good}
    assert {int(s) for b in batches for s in b["scene_index"]} <= good_indices
    metrics = iterator_metrics(it)
    for reason in cases:
        assert metrics[f"data/skipped/{reason}"] >= 1, reason
    assert metrics["data/examples_skipped"] == sum(metrics[f"data/skipped/{r}"] for r in cases)
    assert metrics["data/examples_seen"] == metrics["data/examples_skipped"] + 12
    assert 0.5 < metrics["data/bad_fraction"] < 0.95
    # the counters are part of the iterator state
    state = it.get_state()
    restored = iter(make_train_dataset(cfg, seed=0, process_index=0, process_count=1))
    restored.set_state(state)
    assert iterator_metrics(restored) == metrics


def test_run_stops_past_the_bad_fraction_bound(tmp_path):
    rng = np.random.default_rng(2)
    make_bad_scenes(str(tmp_path), rng)
    _re10k(str(tmp_path), "good", rng)
    it = iter(
        make_train_dataset(_config(tmp_path, max_bad_fraction=0.2), seed=0, process_index=0, process_count=1)
    )
    with pytest.raises(DataQualityError, match=r"above the bound max_bad_fraction=20\.0%"):
        for _ in range(20):
            next(it)
