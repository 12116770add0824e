"""The GenXD train state and the sharded, jitted train step (EDM v-prediction with masked latent conditioning).

The train state is a dict of (sharded) jax arrays; ``params`` and ``ema`` are pure dicts of the UNet's
``nnx.Param`` values (``nnx.to_pure_dict`` layout, merged back with ``nnx.merge(graphdef, params)``):

    step     ()  int32   optimiser steps taken (skipped non-finite steps included)
    params   dict        UNet parameters, float32, sharded by their logical names (genxd_jax.sharding)
    opt      optax state AdamW moments (the parameters' shardings) + replicated counters
    ema      dict        EMA of params (only when config.ema_decay > 0)
    skipped  ()  int32   steps whose loss or gradient norm was non-finite (parameters left unchanged)

One step (genxd-model.md §13.4 conditioning, §16 SVD-Xtend loss):

    x0 = encode(images) (B, F, h, w, 4), h = H/8            σ ~ exp(N(p_mean, p_std²)) (B,)
         (or, with config.data.latents, drawn from the stored posterior statistics: the encoder is skipped;
          config.vae.posterior "mean" uses the posterior mean, "sample" a draw, identical on both paths)
    noisy = x0 + σ·n                                          x_in = c_in·noisy at targets, x0 at context
    unet_in = [x_in (4), zeros (4), Plücker rays (6; 0 for video), context mask (1)]  (B, F, h, w, 15)
    F = UNet(unet_in, 0.25·ln σ, added_time_ids = [0, camera flag], indicator, motion)
    D = c_skip·noisy + c_out·F
    loss = mean_b λ(σ_b) · mean over target frames, pixels, channels of (D − x0)²,  λ = (1 + σ²)/σ²

Condition dropout (prob ``config.diffusion.condition_dropout`` per example) zeroes the context latents, rays,
added_time_ids and motion, keeping the mask, as the unconditional branch at inference does (§13.6).
"""

from __future__ import annotations

import functools
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from genxd_jax import sharding
from genxd_jax.diffusion import denoised_from_v, edm_loss_weight, edm_preconditioning, sample_training_sigmas
from genxd_jax.geometry import plucker_rays
from genxd_jax.models import Pool8Autoencoder, abstract_unet, abstract_vae, build_unet, load_unet, load_vae
from genxd_jax.models.vae import VAEConfig

LATENT_FACTOR = 8  # image pixels per latent pixel (SVD VAE and pool8)

# The batch a step consumes: key -> number of dimensions (the leading one is the global batch).
BATCH_NDIMS = dict(images=5, c2w=4, intrinsics=4, indicator=1, motion_strength=1, context_mask=2)
# With config.data.latents: the stored posterior statistics replace the images (genxd_jax.data.latents).
LATENT_BATCH_NDIMS = dict(latent_mean=5, latent_logvar=5, c2w=4, intrinsics=4, indicator=1, motion_strength=1,
                          context_mask=2)
POSTERIORS = ("mean", "sample")


def batch_ndims(latents: bool = False) -> dict:
    """The batch keys of a step and their number of dimensions: images, or latent statistics."""
    return LATENT_BATCH_NDIMS if latents else BATCH_NDIMS


def uses_latents(config) -> bool:
    """Whether ``config`` trains from pre-encoded latents (``config.data.latents``)."""
    return bool(config.data.get("latents", False))


# ----------------------------------------------------------------------------------------------------------
# model, autoencoder, optimiser


def unet_config_dict(config) -> dict:
    """The UNet config dict: ``model.unet_config_path`` if set, else ``model.unet``."""
    if config.model.unet_config_path:
        with open(config.model.unet_config_path) as f:
            return json.load(f)
    return dict(config.model.unet)


def make_optimizer(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW with linear warm-up to a constant LR and global-norm clipping; returns ``(tx, schedule)``."""
    o = config.optimizer
    if int(o.warmup_steps) > 0:
        schedule = optax.linear_schedule(0.0, o.learning_rate, int(o.warmup_steps))
    else:
        schedule = optax.constant_schedule(o.learning_rate)
    parts = []
    if o.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(o.grad_clip_norm))
    parts.append(optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay))
    return optax.chain(*parts), schedule


def make_autoencoder(config, *, abstract: bool = False) -> nnx.Module:
    """The frozen autoencoder named by ``config.vae.path``: "pool8" or a released VAE directory.

    ``abstract=True`` builds shapes only (for planning); the VAE config is then read from the directory when
    it exists, else SVD's.
    """
    path = config.vae.path
    if path == "pool8":
        return Pool8Autoencoder(config.vae.scaling_factor)
    if abstract:
        cfg_file = os.path.join(path, "config.json")
        return abstract_vae(VAEConfig.from_json(cfg_file) if os.path.isfile(cfg_file) else VAEConfig())
    return load_vae(path)


def unet_options(config) -> dict:
    """The UNet's execution options from ``config.model`` (None where the config says "": the model's default),
    the same for the trained, the abstract and the loaded UNet."""
    return dict(remat_policy=config.model.remat_policy or None, attention_impl=config.model.attention_impl or None)


def build_unet_for_training(config) -> nnx.Module:
    """The UNet to train, on the host, initialised from ``config.init.source`` (``workdir:`` loads later)."""
    dtype = jnp.dtype(config.model.dtype)
    kind, _, path = config.init.source.partition(":")
    if kind == "genxd":
        unet = load_unet(path, dtype=jnp.float32, compute_dtype=dtype, **unet_options(config))
        logging.info("initialised the UNet from the GenXD checkpoint %s", path)
        return unet
    unet = build_unet(unet_config_dict(config), seed=int(config.seed), dtype=dtype, param_dtype=jnp.float32,
                      **unet_options(config))
    if kind == "svd":
        from genxd_jax.convert.safetensors_io import read_released_dir
        from genxd_jax.convert.svd_init import init_unet_from_svd

        _, tensors = read_released_dir(path)
        unet, report = init_unet_from_svd(unet, tensors)
        logging.info("initialised the UNet from the SVD checkpoint %s: %s", path, report)
    return unet


# ----------------------------------------------------------------------------------------------------------
# the train state


def _replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def abstract_train_state(config, tx, mesh, rules=sharding.DEFAULT_RULES) -> tuple[nnx.GraphDef, dict]:
    """``(graphdef, state)`` with ``jax.ShapeDtypeStruct`` leaves carrying their shardings; allocates nothing.

    Used to restore checkpoints onto any mesh, to compile the step ahead of time and by the planning mode of
    ``benchmarks/train_step.py``.
    """
    unet = abstract_unet(unet_config_dict(config), dtype=jnp.dtype(config.model.dtype), param_dtype=jnp.float32,
                         **unet_options(config))
    graphdef, params_state, rest = nnx.split(unet, nnx.Param, ...)
    if jax.tree.leaves(rest):
        raise ValueError("the UNet has non-Param state; the trainer only handles parameters")
    shardings = nnx.to_pure_dict(sharding.state_shardings(params_state, mesh, rules))
    params = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          nnx.to_pure_dict(params_state), shardings)
    repl = _replicated(mesh)
    opt = jax.eval_shape(tx.init, params)
    opt_shardings = optax.tree_map_params(tx, lambda _, s: s, opt, shardings, transform_non_params=lambda _: repl)
    opt = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), opt, opt_shardings)
    scalar = jax.ShapeDtypeStruct((), jnp.int32, sharding=repl)
    state = {"step": scalar, "params": params, "opt": opt, "skipped": scalar}
    if config.ema_decay > 0:
        state["ema"] = params
    return graphdef, state


def shardings_of(abstract_state):
    """The ``NamedSharding`` tree of an abstract (or concrete) state."""
    return jax.tree.map(lambda x: x.sharding, abstract_state)


def create_train_state(config, tx, mesh, rules=sharding.DEFAULT_RULES, *, params=None,
                       abstract=None) -> tuple[nnx.GraphDef, dict]:
    """``(graphdef, state)``: UNet parameters placed on ``mesh``, a fresh optimiser state and EMA, step 0.

    ``params`` (a pure dict, e.g. restored from another run) or, when None, the UNet from ``config.init.source``
    built on the host (numpy init or a loaded checkpoint; every process builds the same values) and placed leaf
    by leaf with its shardings. The optimiser state is created by a jitted ``tx.init`` with explicit output
    shardings, so the moments are born sharded. ``abstract``: the ``abstract_train_state(config, tx, mesh,
    rules)`` pair if the caller already has it (it takes ~3 s to trace for the full model).
    """
    graphdef, abstract = abstract or abstract_train_state(config, tx, mesh, rules)
    shardings = shardings_of(abstract)
    if params is None:
        unet = build_unet_for_training(config)
        host_params = nnx.to_pure_dict(nnx.state(unet, nnx.Param))
        del unet
        params = jax.tree.map(lambda x, s: jax.device_put(np.asarray(x), s), host_params, shardings["params"])
    state = {
        "step": jax.device_put(np.int32(0), shardings["step"]),
        "params": params,
        "opt": jax.jit(tx.init, out_shardings=shardings["opt"])(params),
        "skipped": jax.device_put(np.int32(0), shardings["skipped"]),
    }
    if "ema" in abstract:
        state["ema"] = jax.jit(lambda p: jax.tree.map(jnp.copy, p), out_shardings=shardings["ema"])(params)
    return graphdef, state


# ----------------------------------------------------------------------------------------------------------
# the loss and the step


def batch_rays(c2w, intrinsics, h: int, w: int, indicator):
    """Plücker rays (B, F, h, w, 6) at latent resolution; zero for video (indicator 1)."""
    rays = jax.vmap(lambda c, k: plucker_rays(c, k, h, w))(c2w, intrinsics)
    return jnp.where((indicator == 1)[:, None, None, None, None], 0.0, rays)


def loss_fn(params, graphdef, latents, batch, rng, config):
    """The EDM loss (scalar, float32) and aux metrics; ``latents`` (B, F, h, w, 4) are x0."""
    b, f, h, w, _ = latents.shape
    k_sigma, k_noise, k_drop = jax.random.split(rng, 3)
    dc = config.diffusion
    sigma = sample_training_sigmas(k_sigma, (b,), dc.p_mean, dc.p_std)
    noise = jax.random.normal(k_noise, latents.shape, jnp.float32)
    noisy = latents + sigma[:, None, None, None, None] * noise
    _, _, c_in, c_noise = edm_preconditioning(sigma)
    mask = batch["context_mask"].astype(jnp.float32)[:, :, None, None, None]  # (B, F, 1, 1, 1)
    indicator = batch["indicator"].astype(jnp.int32)
    keep = (jax.random.uniform(k_drop, (b,)) >= dc.condition_dropout).astype(jnp.float32)
    keep5 = keep[:, None, None, None, None]
    x_in = noisy * c_in[:, None, None, None, None] * (1 - mask) + latents * mask * keep5
    rays = batch_rays(batch["c2w"], batch["intrinsics"], h, w, indicator) * keep5
    mask_map = jnp.broadcast_to(mask, (b, f, h, w, 1))
    unet_in = jnp.concatenate([x_in, jnp.zeros_like(x_in), rays, mask_map], axis=-1)
    camera_flag = (indicator != 1).astype(jnp.float32)
    added = jnp.stack([jnp.zeros((b, f)), jnp.broadcast_to(camera_flag[:, None], (b, f))], axis=-1)
    added = added * keep[:, None, None]
    motion = batch["motion_strength"].astype(jnp.float32) * keep
    model = nnx.merge(graphdef, params)
    v = model(unet_in, c_noise, added, indicator, motion)
    denoised = denoised_from_v(v.astype(jnp.float32), noisy, sigma)
    target = 1.0 - mask  # (B, F, 1, 1, 1)
    err = jnp.sum(((denoised - latents) ** 2) * target, axis=(1, 2, 3, 4))
    count = jnp.maximum(jnp.sum(target, axis=(1, 2, 3, 4)) * h * w * latents.shape[-1], 1.0)
    per_example = err / count
    weight = edm_loss_weight(sigma) if dc.loss_weighting == "edm" else jnp.ones_like(sigma)
    loss = jnp.mean(weight * per_example)
    return loss, {"mse": jnp.mean(per_example), "sigma_mean": jnp.mean(sigma)}


def encode_images(ae_graphdef, ae_state, images, scaling_factor: float):
    """Frozen encoder: images (N, H, W, 3) in [0, 1] -> latents (N, H/8, W/8, 4) × scaling factor (float32)."""
    mean, _ = nnx.merge(ae_graphdef, ae_state).encode(images * 2.0 - 1.0)
    return jax.lax.stop_gradient(mean.astype(jnp.float32) * scaling_factor)


def posterior_latents(mean, logvar, rng, config):
    """x0 from the encoder's posterior statistics (any shape, before the scaling factor), float32:
    ``config.vae.posterior`` "mean" (default) gives mean × s; "sample" gives (mean + exp(½·logvar)·ε) × s with
    ε ~ N(0, 1) from ``rng`` (SVD-Xtend's ``latent_dist.sample()``). The same function serves the on-the-fly
    encoder and the stored statistics, so both paths draw the same x0 for the same step."""
    mean = mean.astype(jnp.float32)
    if config.vae.get("posterior", "mean") == "sample":
        std = jnp.exp(0.5 * jnp.clip(logvar.astype(jnp.float32), -30.0, 20.0))  # diffusers' clamp
        mean = mean + std * jax.random.normal(rng, mean.shape, jnp.float32)
    return jax.lax.stop_gradient(mean * float(config.vae.scaling_factor))


def batch_latents(batch, ae_graphdef, ae_state, rng, config):
    """x0 (B, F, h, w, 4) for a step: from ``latent_mean``/``latent_logvar`` when the batch has them (the
    encoder is skipped), else by encoding ``images`` with the frozen autoencoder; then
    :func:`posterior_latents` with the posterior key of ``rng`` (``fold_in(rng, 1)``)."""
    key = jax.random.fold_in(rng, 1)
    if "latent_mean" in batch:
        return posterior_latents(batch["latent_mean"], batch["latent_logvar"], key, config)
    images = batch["images"]
    b, f, hh, ww, _ = images.shape
    mean, logvar = nnx.merge(ae_graphdef, ae_state).encode(images.reshape(b * f, hh, ww, 3).astype(jnp.float32)
                                                           * 2.0 - 1.0)
    latents = posterior_latents(mean.reshape(b, f, *mean.shape[1:]), logvar.reshape(b, f, *logvar.shape[1:]),
                                key, config)
    return latents


def train_step(state, batch, ae_state, *, graphdef, ae_graphdef, tx, schedule, config, base_key):
    """One optimiser step; returns ``(new_state, metrics)``. A non-finite loss or gradient norm leaves the
    parameters, optimiser state and EMA unchanged and increments ``skipped``."""
    rng = jax.random.fold_in(base_key, state["step"])
    latents = batch_latents(batch, ae_graphdef, ae_state, rng, config)
    (loss, aux_metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state["params"], graphdef, latents, batch, rng, config)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, new_opt = tx.update(grads, state["opt"], state["params"])
    new_params = optax.apply_updates(state["params"], updates)

    def pick(new, old):
        return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

    new_state = dict(state)
    new_state["params"] = pick(new_params, state["params"])
    new_state["opt"] = pick(new_opt, state["opt"])
    if "ema" in state:
        d = config.ema_decay
        ema = jax.tree.map(lambda e, p: d * e + (1 - d) * p, state["ema"], new_state["params"])
        new_state["ema"] = pick(ema, state["ema"])
    new_state["skipped"] = state["skipped"] + (~finite).astype(jnp.int32)
    new_state["step"] = state["step"] + 1
    metrics = {"loss": loss, "grad_norm": grad_norm, "learning_rate": schedule(state["step"]),
               "skipped_steps": new_state["skipped"], "finite": finite.astype(jnp.float32), **aux_metrics}
    return new_state, metrics


def batch_shardings(mesh, rules=sharding.DEFAULT_RULES, *, latents: bool = False) -> dict:
    """Per-key sharding of a global batch: the leading axis over the ``batch`` mesh axes (data × fsdp)."""
    return {k: sharding.batch_sharding(mesh, n, rules) for k, n in batch_ndims(latents).items()}


def abstract_batch(config, global_batch: int, mesh, rules=sharding.DEFAULT_RULES) -> dict:
    """``jax.ShapeDtypeStruct`` leaves of one global batch (for ahead-of-time compilation)."""
    f, s = int(config.data.num_frames), int(config.data.resolution)
    shapes = dict(c2w=((global_batch, f, 4, 4), jnp.float32),
                  intrinsics=((global_batch, f, 3, 3), jnp.float32), indicator=((global_batch,), jnp.int32),
                  motion_strength=((global_batch,), jnp.float32), context_mask=((global_batch, f), jnp.bool_))
    if uses_latents(config):
        h = s // LATENT_FACTOR
        shapes.update(latent_mean=((global_batch, f, h, h, 4), jnp.float32),
                      latent_logvar=((global_batch, f, h, h, 4), jnp.float32))
    else:
        shapes.update(images=((global_batch, f, s, s, 3), jnp.float32))
    sh = batch_shardings(mesh, rules, latents=uses_latents(config))
    return {k: jax.ShapeDtypeStruct(shape, dtype, sharding=sh[k]) for k, (shape, dtype) in shapes.items()}


def to_global_batch(local: dict, mesh, rules=sharding.DEFAULT_RULES) -> dict:
    """Host-local numpy batch -> global jax arrays (each process contributes its rows); an image batch or, when
    ``local`` holds ``latent_mean``, a latent batch."""
    latents = "latent_mean" in local
    sh = batch_shardings(mesh, rules, latents=latents)
    return {k: jax.make_array_from_process_local_data(sh[k], np.asarray(local[k])) for k in batch_ndims(latents)}


def make_train_step(config, graphdef, autoencoder, state_shardings, mesh, rules=sharding.DEFAULT_RULES):
    """``(jitted_step, ae_state)``: ``jitted_step(state, batch, ae_state) -> (state, metrics)``.

    Compiled with explicit in/out shardings (state by logical names, batch over data × fsdp, the frozen
    autoencoder replicated) and the state's buffers donated. The optimiser and its schedule come from
    ``make_optimizer(config)``, a pure function of the config, so they are the ones that built the state.
    """
    tx, schedule = make_optimizer(config)
    ae_graphdef, ae_state = nnx.split(autoencoder)
    # Training on stored latents never runs the encoder: its parameters are not arguments of the step.
    ae_state = {} if uses_latents(config) else nnx.to_pure_dict(ae_state)
    repl = _replicated(mesh)
    ae_shardings = jax.tree.map(lambda _: repl, ae_state)
    if not any(isinstance(x, jax.ShapeDtypeStruct) for x in jax.tree.leaves(ae_state)):
        ae_state = jax.device_put(ae_state, ae_shardings)
    step = functools.partial(train_step, graphdef=graphdef, ae_graphdef=ae_graphdef, tx=tx, schedule=schedule,
                             config=config, base_key=jax.random.key(int(config.seed)))
    in_batch = batch_shardings(mesh, rules, latents=uses_latents(config))
    jitted = jax.jit(step, in_shardings=(state_shardings, in_batch, ae_shardings),
                     out_shardings=(state_shardings, None), donate_argnums=(0,))
    return jitted, ae_state
