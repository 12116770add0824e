"""Training on pre-encoded latents equals training with the encoder in the step.

A few procedural scenes are encoded with ``data/prepare.py --encode-latents`` (pool8, and the tiny fixture's
random-weight SVD-architecture VAE) at the tiny resolution. Checked:

- the latent data stream picks the same frames, context views and cameras as the image stream for the same
  seed, and its stored statistics are the encoder's on those frames;
- on the same batch, the loss and every gradient of the latent path equal the on-the-fly path
  (``config.vae.posterior`` "mean" and "sample": the posterior draw is the same);
- a tiny run trains from latents end to end; bad configurations are refused naming the field.
"""

from __future__ import annotations

import importlib.util
import math
import os
import pathlib
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "configs"))

import stage3  # noqa: E402

from genxd_jax import train, train_step  # noqa: E402
from genxd_jax.data import make_train_dataset, source_config  # noqa: E402
from genxd_jax.data.latents import LatentDataError, LatentSceneSource, decode_record  # noqa: E402
from genxd_jax.models import load_vae  # noqa: E402

CACHE = os.environ.get("GENXD_TEST_XLA_CACHE", os.path.join(tempfile.gettempdir(), "genxd_jax_test_xla_cache"))
NUM_SCENES = 3


def load_prepare():
    spec = importlib.util.spec_from_file_location("genxd_prepare", REPO / "data" / "prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def image_sources():
    return (source_config("s3d", "synthetic", "3d", 0.5, num_scenes=NUM_SCENES),
            source_config("s4d", "synthetic", "4d", 0.5, num_scenes=NUM_SCENES))


def tiny_config(latent_dirs=None, steps: int = 2):
    c = stage3.get_config("tiny")
    c.num_train_steps = steps
    c.checkpoint_every_steps = 0
    c.eval.every_steps = 0
    c.optimizer.warmup_steps = 0
    c.compilation_cache_dir = CACHE
    c.data.pad_probability = 0.0
    c.data.sources = image_sources()
    if latent_dirs is not None:
        c.data.latents = True
        c.data.sources = tuple(source_config(s.name, "latents", latent_dirs[s.path], 0.5) for s in image_sources())
    return c


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    """{"pool8" | "vae": {"3d": dir, "4d": dir}} written by data/prepare.py's encode_latents."""
    prepare = load_prepare()
    fixtures = pathlib.Path(os.environ.get("GENXD_FIXTURES", REPO.parent / "shared" / "fixtures"))
    out = {}
    for name, vae in (("pool8", "pool8"), ("vae", str(fixtures / "genxd-tiny-a" / "vae"))):
        out[name] = {}
        for kind in ("3d", "4d"):
            d = str(tmp_path_factory.mktemp(f"{name}_{kind}"))
            meta = prepare.encode_latents(f"synthetic:{kind}", vae, 32, d, shards=2, num_scenes=NUM_SCENES,
                                          batch_size=8)
            assert meta["num_scenes"] == NUM_SCENES and meta["resolution"] == 32
            out[name][kind] = d
    return out


def batches(config, n=2):
    it = iter(make_train_dataset(config.data, seed=int(config.data.seed)))
    return [next(it) for _ in range(n)]


def test_latent_stream_matches_the_image_stream(encoded):
    images = batches(tiny_config(), 3)
    latents = batches(tiny_config(encoded["pool8"]), 3)
    from genxd_jax.models import Pool8Autoencoder

    pool8 = Pool8Autoencoder()
    for a, b in zip(images, latents, strict=True):
        for key in ("c2w", "intrinsics", "context_mask", "indicator", "dataset_id", "scene_index"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        x = a["images"]
        mean, logvar = pool8.encode(jnp.asarray(x.reshape(-1, *x.shape[2:])) * 2.0 - 1.0)
        np.testing.assert_allclose(b["latent_mean"], np.asarray(mean).reshape(b["latent_mean"].shape), atol=1e-6)
        np.testing.assert_array_equal(b["latent_logvar"], -30.0)
        assert b["latent_mean"].shape == (2, 4, 4, 4, 4) and "images" not in b
        # 3D: motion 0 on both; procedural 4D scenes know their exact motion only for the image path (the
        # latent record keeps 64² thumbnails for the flow proxy instead), so only the 3D rows must agree.
        is3d = a["indicator"] == 0
        np.testing.assert_array_equal(a["motion_strength"][is3d], b["motion_strength"][is3d])
        assert np.all(np.isfinite(b["motion_strength"])) and np.all(b["motion_strength"] >= 0)


def test_records_round_trip_and_reader_checks(encoded, tmp_path):
    src = LatentSceneSource(encoded["vae"]["4d"], resolution=32)
    assert len(src) == NUM_SCENES
    scene = src.get(2)
    assert scene.latent_mean.shape == (len(scene), 4, 4, 4) and scene.latent_logvar.shape == scene.latent_mean.shape
    assert scene.motion_frames.shape == (len(scene), 64, 64, 3) and scene.indicator == 2
    assert np.all(np.isfinite(scene.latent_logvar)) and scene.latent_logvar.std() > 0  # a real posterior
    with pytest.raises(LatentDataError, match=r"config.data.resolution is 64"):
        LatentSceneSource(encoded["vae"]["4d"], resolution=64)
    with pytest.raises(LatentDataError, match=r"latents.json not found.*--encode-latents"):
        LatentSceneSource(str(tmp_path))
    with pytest.raises(LatentDataError, match=r"record 7: not a latent record"):
        decode_record(b"not an npz", where="x record 7")


@pytest.fixture(scope="module")
def loss_and_grads():
    """``f(x0, batch, step) -> (loss, grads)``: the train step's ``value_and_grad(loss_fn)`` after x0, compiled
    once for every test (the loss reads the config's diffusion fields only; x0 carries the posterior)."""
    config = tiny_config()
    unet = train_step.build_unet_for_training(config)
    graphdef, params = nnx.split(unet, nnx.Param)
    params = nnx.to_pure_dict(params)

    @jax.jit
    def f(x0, batch, rng):
        return jax.value_and_grad(train_step.loss_fn, has_aux=True)(params, graphdef, x0, batch, rng, config)

    def run(x0, batch, step=0):
        common = {k: jnp.asarray(batch[k]) for k in ("c2w", "intrinsics", "indicator", "motion_strength",
                                                     "context_mask")}
        (loss, _), grads = f(x0, common, jax.random.fold_in(jax.random.key(int(config.seed)), step))
        return float(loss), grads

    return run


def _x0(config, batch, autoencoder, step=0):
    """x0 as the train step draws it (``batch_latents``) from an image or a latent batch."""
    ae_graphdef, ae_state = nnx.split(autoencoder)
    keys = train_step.batch_ndims("latent_mean" in batch)
    rng = jax.random.fold_in(jax.random.key(int(config.seed)), step)
    fn = jax.jit(lambda b, s: train_step.batch_latents(b, ae_graphdef, s, rng, config))
    return fn({k: jnp.asarray(batch[k]) for k in keys}, ae_state)


def _latent_batch(image_batch, autoencoder):
    """The image batch with its frames replaced by their stored statistics (encoded as prepare.py does)."""
    from genxd_jax.data.latents import FrameEncoder

    x = image_batch["images"]
    frames = np.round(x.reshape(-1, *x.shape[2:]) * 255.0).astype(np.uint8)
    mean, logvar = FrameEncoder(autoencoder, batch_size=8)(frames)
    out = {k: v for k, v in image_batch.items() if k != "images"}
    out["latent_mean"] = mean.reshape(*x.shape[:2], *mean.shape[1:])
    out["latent_logvar"] = logvar.reshape(out["latent_mean"].shape)
    return out


@pytest.mark.parametrize(("autoencoder", "posterior"), [("pool8", "mean"), ("vae", "sample")])
def test_loss_and_gradients_equal_the_on_the_fly_path(tiny_a, loss_and_grads, autoencoder, posterior):
    config = tiny_config()
    config.vae.posterior = posterior
    if autoencoder == "vae":
        config.vae.path, config.vae.scaling_factor = str(tiny_a / "vae"), 0.18215
        ae = load_vae(tiny_a / "vae")
    else:
        ae = train_step.make_autoencoder(config)
    image_batch = batches(config, 1)[0]
    latent_batch = _latent_batch(image_batch, ae)
    x0_a, x0_b = _x0(config, image_batch, ae), _x0(config, latent_batch, ae)
    assert x0_a.shape == x0_b.shape == (2, 4, 4, 4, 4)
    # The encoder runs in another XLA program here (another fusion / summation order): x0 agrees to float32
    # rounding, and the loss and gradients inherit only that.
    np.testing.assert_allclose(np.asarray(x0_b), np.asarray(x0_a), rtol=1e-5, atol=1e-6)
    loss_a, grads_a = loss_and_grads(x0_a, image_batch)
    loss_b, grads_b = loss_and_grads(x0_b, latent_batch)
    assert math.isfinite(loss_a) and loss_a > 0
    assert loss_b == pytest.approx(loss_a, rel=1e-5)
    flat_a, flat_b = jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)
    scale = max(float(jnp.max(jnp.abs(g))) for g in flat_a)
    worst = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(flat_a, flat_b, strict=True))
    assert 0 < scale and worst <= 1e-4 * scale, (worst, scale)
    if autoencoder == "vae":
        # A real posterior: the draw is part of x0 ("mean" gives other latents), and it is the same draw on both
        # paths because both take it from the step's key.
        config.vae.posterior = "mean"
        assert float(jnp.max(jnp.abs(_x0(config, latent_batch, ae) - x0_b))) > 1e-3


def test_tiny_run_trains_from_latents(encoded, tmp_path):
    config = tiny_config(encoded["pool8"], steps=2)
    result = train.train_and_evaluate(config, str(tmp_path))
    assert result["final_step"] == 2 and result["skipped_steps"] == 0
    assert len(result["losses"]) == 2 and all(math.isfinite(v) for v in result["losses"].values())
    assert (tmp_path / "checkpoints" / "2").is_dir()


@pytest.mark.parametrize(("change", "needle"), [
    (lambda c: setattr(c.data, "latents", True), "source 's3d' has format 'synthetic'"),
    (lambda c: setattr(c.data, "pad_probability", 0.5), "pad_probability 0"),
    (lambda c: setattr(c.vae, "posterior", "mode"), "vae.posterior"),
])
def test_bad_latent_configs_name_the_field(encoded, change, needle):
    config = tiny_config(encoded["pool8"])
    if "format" in needle:
        config = tiny_config()
    change(config)
    with pytest.raises(train.ConfigError, match=needle):
        train.validate_config(config, num_devices=1, process_count=1)
