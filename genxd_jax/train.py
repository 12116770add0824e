"""GenXD training: EDM v-prediction loss with mask-latent conditioning, AdamW, optional EMA, Orbax resume.

``train_and_evaluate(config, workdir)`` runs the loop; the config is ``configs/base.py``-shaped.

The train state is a dict (a pytree of jax arrays, sharded on the mesh from the parameters' logical names):

    step     ()  int32   optimiser steps taken (skipped non-finite steps included)
    params   nnx.State   UNet parameters (float32)
    opt      optax state AdamW moments (same shardings as params) + counters
    ema      nnx.State   EMA of params (only when config.ema_decay > 0)
    skipped  ()  int32   steps whose loss or gradient was non-finite (parameters left unchanged)

One step (genxd-model.md §13.4 conditioning, §16 SVD-Xtend loss):

    x0 = encode(images) (B, F, h, w, 4), h = H/8            σ ~ exp(N(p_mean, p_std²)) (B,)
    noisy = x0 + σ·n                                          x_in = c_in·noisy at targets, x0 at context
    unet_in = [x_in (4), zeros (4), Plücker rays (6; 0 for video), context mask (1)]  (B, F, h, w, 15)
    F = UNet(unet_in, 0.25·ln σ, added_time_ids = [0, camera flag], indicator, motion)
    D = c_skip·noisy + c_out·F
    loss = mean_b λ(σ_b) · mean over target frames, pixels, channels of (D − x0)²,  λ = (1 + σ²)/σ²

Condition dropout (prob config.diffusion.condition_dropout per example) zeroes the context latents, rays,
added_time_ids and motion, keeping the mask, as the unconditional branch at inference does (§13.6).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from clu import metric_writers, parameter_overview, periodic_actions
from flax import nnx

from genxd_jax import checkpointing, sharding
from genxd_jax.data import make_train_dataset
from genxd_jax.diffusion import denoised_from_v, edm_loss_weight, edm_preconditioning, sample_training_sigmas
from genxd_jax.geometry import plucker_rays
from genxd_jax.models import UNetConfig, build_unet, load_unet, load_vae
from genxd_jax.models.unet import REMAT_POLICIES

LATENT_FACTOR = 8  # image pixels per latent pixel (SVD VAE and pool8)


class ConfigError(ValueError):
    """An impossible config value; the message names the field."""


# ----------------------------------------------------------------------------------------------------------
# config validation


def unet_config_dict(config) -> dict:
    """The UNet config dict: ``model.unet_config_path`` if set, else ``model.unet``."""
    if config.model.unet_config_path:
        import json

        with open(config.model.unet_config_path) as f:
            return json.load(f)
    return dict(config.model.unet)


def resolve_mesh_shape(config, num_devices: int) -> dict[str, int]:
    """The mesh axis sizes with -1 filled in from ``num_devices``."""
    shape = {k: int(v) for k, v in config.mesh.items()}
    if list(shape) != ["data", "fsdp"]:
        raise ConfigError(f"config.mesh must have exactly the axes data and fsdp (in this order), got {list(shape)}")
    fill = [k for k, v in shape.items() if v == -1]
    if len(fill) > 1:
        raise ConfigError(f"config.mesh: at most one axis may be -1, got {shape}")
    for k, v in shape.items():
        if v != -1 and v < 1:
            raise ConfigError(f"config.mesh.{k} must be >= 1 or -1, got {v}")
    known = math.prod(v for v in shape.values() if v != -1)
    if fill:
        if num_devices % known:
            raise ConfigError(f"config.mesh {shape} does not divide the {num_devices} devices")
        shape[fill[0]] = num_devices // known
    if math.prod(shape.values()) > num_devices:
        raise ConfigError(f"config.mesh {shape} needs {math.prod(shape.values())} devices, have {num_devices}")
    return shape


def validate_config(config, *, num_devices: int | None = None, process_count: int | None = None) -> None:
    """Raises ConfigError (naming the field) for values that cannot train, before anything is compiled."""
    num_devices = jax.device_count() if num_devices is None else num_devices
    process_count = jax.process_count() if process_count is None else process_count

    def need(cond, field, msg):
        if not cond:
            raise ConfigError(f"config.{field}: {msg}")

    d = config.data
    need(int(d.num_frames) >= 2, "data.num_frames", f"must be >= 2 (one context + one target), got {d.num_frames}")
    need(int(d.batch_size) >= 1, "data.batch_size", f"must be >= 1, got {d.batch_size}")
    need(config.optimizer.learning_rate > 0, "optimizer.learning_rate",
         f"must be > 0, got {config.optimizer.learning_rate}")
    need(config.optimizer.warmup_steps >= 0, "optimizer.warmup_steps", "must be >= 0")
    need(0 < config.optimizer.b1 < 1 and 0 < config.optimizer.b2 < 1, "optimizer.b1/b2", "must be in (0, 1)")
    need(config.optimizer.eps > 0, "optimizer.eps", "must be > 0")
    need(config.optimizer.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0")
    need(config.optimizer.grad_clip_norm >= 0, "optimizer.grad_clip_norm", "must be >= 0 (0 = off)")
    need(0 <= config.ema_decay < 1, "ema_decay", f"must be in [0, 1), got {config.ema_decay}")
    need(config.diffusion.p_std >= 0, "diffusion.p_std", "must be >= 0")
    need(0 <= config.diffusion.condition_dropout <= 1, "diffusion.condition_dropout", "must be in [0, 1]")
    need(config.diffusion.loss_weighting in ("edm", "none"), "diffusion.loss_weighting", "must be 'edm' or 'none'")
    need(config.num_train_steps >= 0, "num_train_steps", "must be >= 0")
    need(config.checkpoint_every_steps >= 0, "checkpoint_every_steps", "must be >= 0 (0 = only at the end)")
    need(config.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1")
    need(config.log_every_steps >= 1, "log_every_steps", "must be >= 1")
    need(config.model.dtype in ("float32", "bfloat16", "float16"), "model.dtype",
         f"must be float32/bfloat16/float16, got {config.model.dtype!r}")
    need(config.model.remat_policy in ("", *REMAT_POLICIES), "model.remat_policy",
         f"must be '' or one of {sorted(REMAT_POLICIES)}, got {config.model.remat_policy!r}")
    src = config.init.source
    need(src == "random" or src.split(":", 1)[0] in ("svd", "genxd", "workdir") and ":" in src, "init.source",
         f"must be random, svd:<dir>, genxd:<dir> or workdir:<dir>, got {src!r}")
    try:
        unet_cfg = UNetConfig.from_dict(unet_config_dict(config))
    except (ValueError, OSError) as e:
        raise ConfigError(f"config.model.unet: {e}") from e
    need(unet_cfg.in_channels == 15, "model.unet.in_channels", "must be 15 (4 latent + 4 zero + 6 rays + 1 mask)")
    need(unet_cfg.out_channels == 4, "model.unet.out_channels", "must be 4")
    factor = LATENT_FACTOR * 2 ** (len(unet_cfg.block_out_channels) - 1)
    need(int(d.resolution) % factor == 0, "data.resolution",
         f"must be a multiple of {factor} (8 × 2^(UNet levels − 1)), got {d.resolution}")
    shape = resolve_mesh_shape(config, num_devices)
    shards = shape["data"] * shape["fsdp"]
    global_batch = int(d.batch_size) * process_count
    need(global_batch % shards == 0, "data.batch_size",
         f"the global batch {global_batch} (= data.batch_size × {process_count} processes) must be divisible by "
         f"mesh data × fsdp = {shards}")


# ----------------------------------------------------------------------------------------------------------
# autoencoders


def pool8_encode(images: jax.Array) -> jax.Array:
    """The parameter-free "pool8" encoder (configs/base.py): (N, H, W, 3) in [-1, 1] -> (N, H/8, W/8, 4)."""
    n, h, w, _ = images.shape
    blocks = images.reshape(n, h // 8, 8, w // 8, 8, 3).astype(jnp.float32)
    rgb = blocks.mean(axis=(2, 4))
    luma = blocks @ jnp.asarray([0.299, 0.587, 0.114], jnp.float32)  # (n, h/8, 8, w/8, 8)
    detail = luma[:, :, :4].mean(axis=(2, 4)) - luma[:, :, 4:].mean(axis=(2, 4))
    return jnp.concatenate([rgb, detail[..., None]], axis=-1)


def pool8_decode(latents: jax.Array) -> jax.Array:
    """Approximate inverse of :func:`pool8_encode`: (N, h, w, 4) -> (N, 8h, 8w, 3) in [-1, 1] (nearest)."""
    rgb = latents[..., :3]
    return jnp.repeat(jnp.repeat(rgb, 8, axis=1), 8, axis=2)


def make_encoder(config):
    """``(encode_fn(aux, images (N,H,W,3) in [0,1]) -> latents (N,H/8,W/8,4) × scale, aux_state)``."""
    scale = float(config.vae.scaling_factor)
    if config.vae.path == "pool8":
        return (lambda aux, images: pool8_encode(images * 2.0 - 1.0) * scale), {}
    vae = load_vae(config.vae.path)
    graphdef, vae_state = nnx.split(vae)

    def encode(aux, images):
        model = nnx.merge(graphdef, aux)
        mean, _ = model.encode(images * 2.0 - 1.0)
        return jax.lax.stop_gradient(mean.astype(jnp.float32) * scale)

    return encode, vae_state


# ----------------------------------------------------------------------------------------------------------
# model, optimiser, state


def make_optimizer(config) -> optax.GradientTransformation:
    """AdamW with linear warm-up to a constant LR and global-norm clipping."""
    o = config.optimizer
    schedule = optax.linear_schedule(0.0, o.learning_rate, max(int(o.warmup_steps), 1))
    if int(o.warmup_steps) == 0:
        schedule = optax.constant_schedule(o.learning_rate)
    parts = []
    if o.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(o.grad_clip_norm))
    parts.append(optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay))
    return optax.chain(*parts), schedule


def build_model(config):
    """The UNet named by ``config.model`` / ``config.init`` (unsharded; ``workdir:`` params come later)."""
    dtype = jnp.dtype(config.model.dtype)
    remat = config.model.remat_policy or None
    src = config.init.source
    kind, _, path = src.partition(":")
    if kind == "genxd":
        return load_unet(path, dtype=jnp.float32, compute_dtype=dtype, remat_policy=remat)
    unet = build_unet(unet_config_dict(config), seed=int(config.seed), dtype=dtype, param_dtype=jnp.float32,
                      remat_policy=remat)
    if kind == "svd":
        from genxd_jax.convert.safetensors_io import read_released_dir
        from genxd_jax.convert.svd_init import init_unet_from_svd

        _, tensors = read_released_dir(path)
        unet, report = init_unet_from_svd(unet, tensors)
        logging.info("SVD initialisation: %s", report)
    return unet


def init_state(config, unet, tx, mesh, rules=sharding.DEFAULT_RULES):
    """``(graphdef, state, state_shardings)`` with the state placed on ``mesh``."""
    graphdef, params = nnx.split(unet, nnx.Param)
    rest = nnx.state(unet, nnx.Not(nnx.Param))
    if jax.tree.leaves(rest):
        raise ValueError("the UNet has non-Param state; the trainer only handles parameters")
    params = sharding.shard_state(params, mesh, rules)
    state = {"step": jnp.zeros((), jnp.int32), "params": params, "opt": None, "skipped": jnp.zeros((), jnp.int32)}
    repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    state["step"] = jax.device_put(state["step"], repl)
    state["skipped"] = jax.device_put(state["skipped"], repl)
    state["opt"] = jax.jit(tx.init)(params)  # moments inherit the parameter shardings
    if config.ema_decay > 0:
        state["ema"] = jax.tree.map(jnp.copy, params)
    def on_mesh(x):
        sh = x.sharding
        return x if isinstance(sh, jax.sharding.NamedSharding) and sh.mesh == mesh else jax.device_put(x, repl)

    state = jax.tree.map(on_mesh, state)
    return graphdef, state, jax.tree.map(lambda x: x.sharding, state)


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
    sig5 = sigma[:, None, None, None, None]
    noisy = latents + sig5 * noise
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
    denoised = denoised_from_v(v, noisy, sigma)
    target = 1.0 - mask  # (B, F, 1, 1, 1)
    err = jnp.sum(((denoised - latents) ** 2) * target, axis=(1, 2, 3, 4))
    count = jnp.maximum(jnp.sum(target, axis=(1, 2, 3, 4)) * h * w * latents.shape[-1], 1.0)
    per_example = err / count
    weight = edm_loss_weight(sigma) if dc.loss_weighting == "edm" else jnp.ones_like(sigma)
    loss = jnp.mean(weight * per_example)
    return loss, {"mse": jnp.mean(per_example), "sigma_mean": jnp.mean(sigma)}


def train_step(state, batch, aux, *, graphdef, tx, schedule, encode, config, base_key):
    """One optimiser step; returns ``(new_state, metrics)``. Non-finite steps leave params unchanged."""
    images = batch["images"]
    b, f, hh, ww, _ = images.shape
    latents = encode(aux, images.reshape(b * f, hh, ww, 3).astype(jnp.float32))
    latents = latents.reshape(b, f, *latents.shape[1:])
    rng = jax.random.fold_in(base_key, state["step"])
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


BATCH_KEYS = ("images", "c2w", "intrinsics", "indicator", "motion_strength", "context_mask")


def to_global_batch(local: dict, mesh) -> dict:
    """Host-local numpy batch -> global jax arrays, leading axis over the ``batch`` mesh axes."""
    out = {}
    for k in BATCH_KEYS:
        x = np.asarray(local[k])
        out[k] = jax.make_array_from_process_local_data(sharding.batch_sharding(mesh, x.ndim), x)
    return out


# ----------------------------------------------------------------------------------------------------------
# the loop


def make_mesh(config):
    shape = resolve_mesh_shape(config, jax.device_count())
    n = shape["data"] * shape["fsdp"]
    return sharding.make_mesh(shape, devices=jax.devices()[:n])


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains to ``config.num_train_steps`` (resuming from ``workdir`` if it holds a checkpoint).

    Returns ``{"losses": {step: loss}, "final_step": int, "skipped_steps": int, "preempted": bool}``
    (losses of the steps run by this call; ``step`` is the step count *after* the update, 1-based).
    """
    validate_config(config)
    os.makedirs(workdir, exist_ok=True)
    if config.compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", config.compilation_cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    process_index = jax.process_index()
    writer = metric_writers.create_default_writer(workdir, just_logging=process_index > 0)
    if process_index == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))

    mesh = make_mesh(config)
    logging.info("mesh %s", dict(mesh.shape))
    tx, schedule = make_optimizer(config)
    unet = build_model(config)
    graphdef, state, state_sh = init_state(config, unet, tx, mesh)
    del unet
    if process_index == 0:
        parameter_overview.log_parameter_overview(nnx.to_pure_dict(state["params"]), msg="UNet parameters")

    dataset = make_train_dataset(config.data, seed=int(config.data.seed), process_index=process_index,
                                 process_count=jax.process_count())
    data_iter = iter(dataset)
    manager = checkpointing.make_manager(workdir, keep=int(config.keep_checkpoints))
    restored = checkpointing.restore(manager, checkpointing.abstract_like(state), data_iter)
    if restored is not None:
        _, state = restored
    elif config.init.source.startswith("workdir:"):
        other = checkpointing.restore_state_only(config.init.source.split(":", 1)[1],
                                                 checkpointing.abstract_like(state))
        state["params"] = other["params"]
        if "ema" in state:
            state["ema"] = jax.tree.map(jnp.copy, other["params"])
    start = int(jax.device_get(state["step"]))
    logging.info("training from step %d to %d", start, config.num_train_steps)

    encode, aux = make_encoder(config)
    aux = jax.device_put(aux, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    step_fn = functools.partial(train_step, graphdef=graphdef, tx=tx, schedule=schedule, encode=encode,
                                config=config, base_key=jax.random.key(int(config.seed)))
    batch_sh = {k: sharding.batch_sharding(mesh, v) for k, v in
                dict(images=5, c2w=4, intrinsics=4, indicator=1, motion_strength=1, context_mask=2).items()}
    jit_step = jax.jit(step_fn, in_shardings=(state_sh, batch_sh, None), out_shardings=(state_sh, None),
                       donate_argnums=(0,))

    report = periodic_actions.ReportProgress(num_train_steps=config.num_train_steps, writer=writer,
                                             every_steps=config.log_every_steps)
    preempt = checkpointing.PreemptionFlag()
    losses, pending = {}, None
    step = start
    try:
        with jax.set_mesh(mesh):
            while step < config.num_train_steps:
                with report.timed("data"):
                    batch = to_global_batch(next(data_iter), mesh)
                state, metrics = jit_step(state, batch, aux)
                step += 1
                if pending is not None:  # write metrics one step late (no host sync on the fresh step)
                    _write(writer, losses, *pending, config.log_every_steps)
                pending = (step, metrics)
                report(step, time.time())
                last = step == config.num_train_steps
                every = config.checkpoint_every_steps
                if last or preempt.requested or (every and step % every == 0):
                    checkpointing.save(manager, step, state, data_iter, config, force=True)
                if preempt.requested:
                    logging.warning("preempted at step %d; checkpoint saved", step)
                    break
            if pending is not None:
                _write(writer, losses, *pending, config.log_every_steps)
    finally:
        manager.wait_until_finished()
        manager.close()
        preempt.restore()
        writer.flush()
    skipped = int(jax.device_get(state["skipped"]))
    return {"losses": losses, "final_step": step, "skipped_steps": skipped, "preempted": preempt.requested}


def _write(writer, losses, step, metrics, every):
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    losses[step] = metrics["loss"]
    if step % every == 0:
        writer.write_scalars(step, metrics)
