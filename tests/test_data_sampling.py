"""Frame and context sampling invariants, and the synthetic scenes' ground truth."""

import numpy as np
import pytest

from genxd_jax.data import BadSceneError, read_scene
from genxd_jax.data.cameras import project
from genxd_jax.data.sampling import choose_context, choose_frames


def test_video_frames_are_consecutive_with_a_bounded_stride():
    rng = np.random.default_rng(0)
    strides = set()
    for _ in range(300):
        idx = choose_frames(rng, 40, 8, indicator=2, max_stride=3)
        diffs = np.diff(idx)
        assert np.all(diffs == diffs[0]) and 1 <= diffs[0] <= 3
        assert idx[0] >= 0 and idx[-1] < 40
        strides.add(int(diffs[0]))
    assert strides == {1, 2, 3}
    # a short scene lowers the stride instead of failing
    idx = choose_frames(rng, 9, 8, indicator=2, max_stride=3)
    assert np.all(np.diff(idx) == 1)


def test_orbit_and_random_views():
    rng = np.random.default_rng(1)
    for _ in range(200):
        idx = choose_frames(rng, 12, 6, indicator=0, view_sampling="orbit", closed_orbit=True)
        step = np.diff(idx) % 12
        assert np.all(step == step[0]) and len(set(idx)) == 6  # evenly spaced around the closed orbit
        idx = choose_frames(rng, 30, 6, indicator=0, view_sampling="random")
        assert len(set(idx)) == 6 and np.all(np.diff(idx) > 0)
        idx = choose_frames(rng, 30, 6, indicator=0, view_sampling="orbit", orbit_max_stride=4)
        assert np.all(np.diff(idx) == np.diff(idx)[0]) and np.diff(idx)[0] <= 4 and idx[-1] < 30
    with pytest.raises(BadSceneError, match="too_few_frames"):
        choose_frames(rng, 5, 6, indicator=0)
    with pytest.raises(ValueError, match="view_sampling"):
        choose_frames(rng, 10, 6, indicator=0, view_sampling="spiral")


def test_context_counts_and_single_view_ratio():
    rng = np.random.default_rng(2)
    counts = np.array(
        [choose_context(rng, 8, single_view_ratio=0.3, max_context_views=3).sum() for _ in range(4000)]
    )
    assert counts.min() == 1 and counts.max() == 3
    assert abs(np.mean(counts == 1) - 0.3) < 0.03
    assert abs(np.mean(counts == 2) - 0.35) < 0.03  # multi-view: k uniform in [2, K]
    positions = np.array(
        [choose_context(rng, 8, single_view_ratio=1.0, max_context_views=3) for _ in range(800)]
    )
    assert np.all(positions.sum(1) == 1) and np.all(positions.sum(0) > 50)  # any slot can be the context
    # F = 2: at most one context, one target left
    assert all(
        choose_context(rng, 2, single_view_ratio=0.0, max_context_views=5).sum() == 1 for _ in range(20)
    )


def test_synthetic_cameras_look_at_the_scene_and_render_it():
    scene = read_scene("synthetic", "3d/0/4", size=48, num_frames=8)
    target = np.array([[0.0, 0.0, 0.3]])
    for c2w, k in zip(scene.c2w, scene.intrinsics, strict=True):
        np.testing.assert_allclose(project(target, c2w, k)[0], [0.5, 0.5], atol=1e-9)
    # the image centre shows the scene (ground or sphere), not the sky, and frames differ along the orbit
    frames = [f() for f in scene.frames[:2]]
    assert frames[0].shape == (48, 48, 3) and not np.array_equal(frames[0], frames[1])


def test_synthetic_motion_label_is_the_known_motion():
    static = read_scene("synthetic", "3d/0/1", size=16)
    assert static.motion_fn is None and static.motion_strength == 0.0
    scene = read_scene("synthetic", "4d/0/1", size=16, num_frames=20)
    m1 = scene.motion_fn(np.arange(0, 8))
    m2 = scene.motion_fn(np.arange(0, 16, 2))
    assert m1 > 0 and m2 == pytest.approx(2 * m1, rel=0.15)  # twice the stride, about twice the displacement
