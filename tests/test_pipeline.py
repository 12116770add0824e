"""GenXDPipeline against the official pipeline's fixture, plus conditioning, guidance and input checks.

One pipeline per module; the CFG loop for the tiny fixture shape compiles once and is reused by every test
that keeps that shape (the number of context views, indicator, motion and guidance scale are traced).
"""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from genxd_jax import pipeline as P
from genxd_jax.convert.safetensors_io import CheckpointError
from genxd_jax.diffusion import set_timesteps


@pytest.fixture(scope="module")
def pipe(tiny_a):
    return P.GenXDPipeline.from_pretrained(tiny_a)


@pytest.fixture(scope="module")
def case(tiny_a):
    """The fixture run, converted to channels-last arrays and pipeline keyword arguments."""
    z = np.load(tiny_a / "pipeline_io.npz")
    return {
        "images": z["context_image"][0].transpose(0, 2, 3, 1),
        "index": z["context_index"],
        "c2w": z["target_c2w"],
        "k": z["intrinsics"],
        "kwargs": dict(
            num_inference_steps=int(z["num_inference_steps"]),
            guidance_scale=float(z["guidance_scale"]),
            indicator=int(z["indicator"]),
            motion_strength=float(z["motion_strength"]),
            init_noise=z["init_noise"][0].transpose(0, 2, 3, 1),
        ),
        "frames": z["frames"][0].transpose(0, 2, 3, 1),
        "unet_input_step0": z["unet_input_step0"].transpose(0, 1, 3, 4, 2),
        "unet_timestep_step0": float(z["unet_timestep_step0"]),
    }


@pytest.fixture(scope="module")
def reference_run(pipe, case):
    """The fixture run, with every progress report recorded."""
    steps = []
    frames = pipe(
        case["images"], case["index"], case["c2w"], case["k"], progress=steps.append, **case["kwargs"]
    )
    return frames, steps


def test_step0_unet_input_matches_official(pipe, case):
    inputs = pipe.prepare(case["images"], case["index"], case["c2w"], case["k"], **case["kwargs"])
    x = P.unet_input(inputs.latents, inputs.schedule.sigmas[0], inputs.conditioning)
    assert x.shape == case["unet_input_step0"].shape
    np.testing.assert_allclose(np.asarray(x), case["unet_input_step0"], atol=1e-5, rtol=0)
    assert inputs.schedule.timesteps[0] == pytest.approx(case["unet_timestep_step0"], abs=1e-6)


def test_whole_run_matches_official(reference_run, case):
    frames, steps = reference_run
    assert frames.shape == case["frames"].shape and frames.dtype == np.float32
    np.testing.assert_allclose(frames, case["frames"], atol=1e-3, rtol=0)
    assert frames.min() >= 0.0 and frames.max() <= 1.0
    # Progress comes from inside the compiled loop: once per step.
    assert sorted(steps) == list(range(1, case["kwargs"]["num_inference_steps"] + 1))


@pytest.mark.parametrize("index", [[1], [0, 2], [0, 1, 3]], ids=["1 view", "2 views", "F-1 views"])
def test_masked_conditioning(index):
    f, h, w = 4, 2, 3
    rng = np.random.default_rng(0)
    lat = rng.normal(size=(len(index), h, w, 4)).astype(np.float32)
    rays = rng.normal(size=(f, h, w, 6)).astype(np.float32)
    cond = P.build_conditioning(lat, index, rays, indicator=2, motion_strength=0.7, guidance=True)
    onehot = np.isin(np.arange(f), index).astype(np.float32)
    assert cond.mask.shape == (2, f, h, w, 1)
    np.testing.assert_array_equal(
        cond.mask[..., 0], np.broadcast_to(onehot[None, :, None, None], (2, f, h, w))
    )
    np.testing.assert_array_equal(cond.context_latents[1][np.array(index)], lat)
    np.testing.assert_array_equal(cond.context_latents[1][onehot == 0], 0)
    np.testing.assert_array_equal(cond.context_latents[0], 0)  # unconditional row: no context
    np.testing.assert_array_equal(cond.image_latents[1, ..., 4:], rays)
    np.testing.assert_array_equal(cond.image_latents[:, ..., :4], 0)
    np.testing.assert_array_equal(cond.image_latents[0], 0)
    np.testing.assert_array_equal(cond.added_time_ids, [[[0, 0]] * f, [[0, 1]] * f])
    np.testing.assert_array_equal(cond.motion, [0.0, np.float32(0.7)])
    np.testing.assert_array_equal(cond.indicator, [2, 2])
    # The step input: x·c_in at generated frames, clean (unscaled) latents at context frames in the cond row.
    x = rng.normal(size=(f, h, w, 4)).astype(np.float32) * 80
    inp = np.asarray(P.unet_input(x, 80.0, cond))
    c_in = 1 / np.sqrt(80.0**2 + 1)
    gen = onehot == 0
    np.testing.assert_allclose(
        inp[:, gen, ..., :4], np.broadcast_to(x[gen] * c_in, (2,) + x[gen].shape), rtol=1e-6
    )
    np.testing.assert_array_equal(inp[1, ~gen, ..., :4], lat)
    np.testing.assert_array_equal(inp[0, ~gen, ..., :4], 0)
    np.testing.assert_array_equal(inp[..., 14], cond.mask[..., 0])


def test_video_mode_and_guidance_off_conditioning():
    rays = np.ones((3, 2, 2, 6), np.float32)
    lat = np.ones((1, 2, 2, 4), np.float32)
    video = P.build_conditioning(lat, [0], rays, indicator=1, motion_strength=0.2, guidance=True)
    np.testing.assert_array_equal(video.image_latents, 0)  # rays zeroed in video mode
    np.testing.assert_array_equal(video.added_time_ids[1, :, 1], 0)  # camera flag 0
    single = P.build_conditioning(lat, [0], rays, indicator=0, motion_strength=0.2, guidance=False)
    assert single.mask.shape[0] == 1 and single.context_latents[0, 0, 0, 0, 0] == 1
    np.testing.assert_array_equal(single.added_time_ids[0, :, 1], 1)
    np.testing.assert_array_equal(single.image_latents[0, ..., 4:], rays)


def test_guidance_off_is_the_conditional_pass(pipe, case, reference_run):
    """guidance_scale ≤ 1 runs one conditional pass; it equals the CFG batch at w = 1 (F_u + 1·(F_c − F_u))
    up to rounding."""
    kwargs = {**case["kwargs"], "guidance_scale": 1.0}
    off = pipe.prepare(case["images"], case["index"], case["c2w"], case["k"], **kwargs)
    assert not off.guidance and off.conditioning.mask.shape[0] == 1
    on = pipe.prepare(case["images"], case["index"], case["c2w"], case["k"], **case["kwargs"])
    lat_off = pipe.denoise(off, 1.0)
    lat_cfg1 = pipe.denoise(on, 1.0)  # the CFG program (already compiled), w = 1
    np.testing.assert_allclose(np.asarray(lat_off), np.asarray(lat_cfg1), atol=2e-4, rtol=0)
    assert np.abs(np.asarray(lat_off) - np.asarray(pipe.denoise(on, 2.0))).max() > 1e-3


def test_modes_and_context_counts_reuse_one_program(pipe, case, reference_run):
    size = P._denoise._cache_size()
    kwargs = {**case["kwargs"], "indicator": 1, "motion_strength": 0.9}
    video = pipe(case["images"], case["index"], case["c2w"], case["k"], **kwargs)
    one_view = pipe(case["images"][1:], case["index"][1:], case["c2w"], case["k"], **case["kwargs"])
    three = pipe(
        np.concatenate([case["images"], case["images"][:1]]),
        [0, 2, 3],
        case["c2w"],
        case["k"],
        **case["kwargs"],
    )
    assert P._denoise._cache_size() == size, "changing mode or the number of views must not recompile"
    for frames in (video, one_view, three):
        assert frames.shape == case["frames"].shape and np.all(np.isfinite(frames))
        assert np.abs(frames - reference_run[0]).max() > 1e-3


def test_random_noise_is_seeded(pipe, case):
    import jax

    kwargs = {**case["kwargs"], "init_noise": None}
    a = pipe.prepare(case["images"], case["index"], case["c2w"], case["k"], rng=jax.random.key(5), **kwargs)
    b = pipe.prepare(case["images"], case["index"], case["c2w"], case["k"], rng=jax.random.key(5), **kwargs)
    np.testing.assert_array_equal(a.latents, b.latents)
    sched = set_timesteps(pipe.scheduler, case["kwargs"]["num_inference_steps"])
    assert float(jnp.std(a.latents)) == pytest.approx(sched.init_noise_sigma, rel=0.2)


def test_decode_in_chunks(pipe):
    latents = np.random.default_rng(1).normal(size=(4, 4, 4, 4)).astype(np.float32)
    whole = pipe.decode(latents)
    chunked = pipe.decode(latents, decode_chunk_size=2)  # two chunks of 2 frames
    assert whole.shape == chunked.shape == (4, 32, 32, 3)
    assert np.all((chunked >= 0) & (chunked <= 1))
    with pytest.raises(ValueError, match="decode_chunk_size"):
        pipe.decode(latents, decode_chunk_size=-1)


@pytest.mark.parametrize(
    "change,match",
    [
        ({"index": [0, 1, 2, 3]}, "too many context views"),
        ({"index": [1, 1]}, "repeats"),
        ({"index": [0, 4]}, "out of range"),
        ({"index": [0]}, "2 context images but 1"),
        ({"images": np.zeros((2, 40, 40, 3), np.float32)}, "multiple of 16"),
        ({"images": np.full((2, 64, 64, 3), 2.0, np.float32)}, r"\[0, 1\]"),
        ({"c2w": np.tile(np.diag([1.0, 1, -1, 1]), (4, 1, 1))}, "reflection"),
        ({"k": np.zeros((3, 3))}, "focal"),
        ({"kwargs": {"indicator": 3}}, "indicator"),
        ({"kwargs": {"init_noise": np.zeros((4, 8, 8, 3))}}, "init_noise"),
        ({"kwargs": {"num_inference_steps": 0}}, "positive integer"),
    ],
)
def test_bad_inputs_fail_clearly(pipe, case, change, match):
    args = {k: change.get(k, case[k]) for k in ("images", "index", "c2w", "k")}
    kwargs = {**case["kwargs"], **change.get("kwargs", {})}
    if "images" not in change and "index" in change and len(change["index"]) != 2:
        args["images"] = np.repeat(case["images"][:1], len(change["index"]), axis=0)
        if match.startswith("2 context"):
            args["images"] = case["images"]
    with pytest.raises(ValueError, match=match):
        pipe.prepare(args["images"], args["index"], args["c2w"], args["k"], **kwargs)


def test_incomplete_checkpoint(tmp_path, tiny_a):
    for sub in ("unet", "scheduler"):
        os.symlink(tiny_a / sub, tmp_path / sub)
    (tmp_path / "vae").mkdir()
    with pytest.raises(CheckpointError, match=r"missing vae/config.json, vae/diffusion_pytorch_model"):
        P.GenXDPipeline.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        P.GenXDPipeline.from_pretrained(tmp_path / "nope")
