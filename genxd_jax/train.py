"""GenXD training loop: ``train_and_evaluate(config, workdir)`` (configs/base.py-shaped config).

    validate_config -> mesh (data × fsdp over every device of every process) -> train state from config.init
    (or the workdir's latest checkpoint, onto this mesh) -> jitted step (genxd_jax.train_step) over the grain
    pipeline -> CLU metrics, Orbax checkpoints (periodic, final, on SIGTERM), periodic novel-view evaluation.

Periodic evaluation (``config.eval.every_steps``, and after the last step when enabled) samples held-out
synthetic scenes with the sampling pipeline (``genxd_jax.pipeline``; EMA parameters when there are any) and
writes, on process 0:
    TensorBoard: scalars ``eval/psnr``, ``eval/ssim``, ``eval/psnr_copy_nearest``, ``eval/psnr_gain`` (and per
        kind, ``eval/psnr_3d`` ...), images ``eval/<scene>`` (rows: ground truth, generated, copy-nearest);
    ``<workdir>/samples/step_<N>/<scene>.png`` (the same grid) and ``<scene>.gif`` (the generated frames);
    ``<workdir>/samples/eval.jsonl``: one line of metrics per evaluation.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from clu import metric_writers, parameter_overview, periodic_actions
from flax import nnx

from genxd_jax import checkpointing, sharding
from genxd_jax.data import make_eval_scenes, make_train_dataset
from genxd_jax.models import UNetConfig
from genxd_jax.models.attention import IMPLEMENTATIONS as ATTENTION_IMPLEMENTATIONS
from genxd_jax.models.unet import REMAT_POLICIES
from genxd_jax.train_step import (
    LATENT_FACTOR,
    abstract_batch,
    abstract_train_state,
    create_train_state,
    make_autoencoder,
    make_optimizer,
    make_train_step,
    shardings_of,
    to_global_batch,
    unet_config_dict,
)


class ConfigError(ValueError):
    """An impossible config value; the message names the field."""


# ----------------------------------------------------------------------------------------------------------
# config validation


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
    need(config.vae.get("posterior", "mean") in ("mean", "sample"), "vae.posterior",
         f"must be 'mean' or 'sample', got {config.vae.get('posterior')!r}")
    if d.get("latents", False):
        for src in d.sources:
            need(src.format == "latents", "data.latents",
                 f"is True but source {src.name!r} has format {src.format!r}: encode it with data/prepare.py "
                 "--encode-latents and give the folder with format 'latents'")
        need(d.square_mode == "crop" and float(d.pad_probability) == 0, "data.latents",
             "needs data.square_mode 'crop' and data.pad_probability 0 (latents are encoded from centre crops)")
    else:
        for src in d.sources:
            need(src.format != "latents", "data.latents",
                 f"is False but source {src.name!r} has format 'latents'; set config.data.latents=True")
    need(config.num_train_steps >= 0, "num_train_steps", "must be >= 0")
    need(config.checkpoint_every_steps >= 0, "checkpoint_every_steps", "must be >= 0 (0 = only at the end)")
    need(config.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1")
    need(config.log_every_steps >= 1, "log_every_steps", "must be >= 1")
    e = config.eval
    need(e.every_steps >= 0, "eval.every_steps", "must be >= 0 (0 = off)")
    need(e.num_scenes >= 1, "eval.num_scenes", f"must be >= 1, got {e.num_scenes}")
    need(e.num_inference_steps >= 1, "eval.num_inference_steps", f"must be >= 1, got {e.num_inference_steps}")
    need(set(e.kinds) <= {"3d", "4d"} and len(e.kinds) > 0, "eval.kinds",
         f"must be a non-empty subset of (3d, 4d), got {e.kinds}")
    need(config.model.dtype in ("float32", "bfloat16", "float16"), "model.dtype",
         f"must be float32/bfloat16/float16, got {config.model.dtype!r}")
    need(config.model.remat_policy in ("", *REMAT_POLICIES), "model.remat_policy",
         f"must be '' or one of {sorted(REMAT_POLICIES)}, got {config.model.remat_policy!r}")
    need((config.model.attention_impl or None) in ATTENTION_IMPLEMENTATIONS, "model.attention_impl",
         f"must be '' or one of {[i for i in ATTENTION_IMPLEMENTATIONS if i]}, got {config.model.attention_impl!r}")
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
# periodic evaluation


def evaluate_novel_views(config, graphdef, params, autoencoder, scenes, mesh) -> tuple[dict, list]:
    """Samples ``scenes`` with the current parameters; returns ``(metrics, results)`` (evaluation.novel_views).

    The parameters stay as they are sharded for training (FSDP: each device holds its slice): the sampler is
    compiled for their shardings and the small sampling inputs are replicated on ``mesh``
    (:func:`genxd_jax.pipeline.parameter_mesh`), so evaluation needs no replicated copy of the model (the full
    float32 UNet would not fit a 16 GB device next to the training state).
    """
    from genxd_jax.diffusion.scheduler import SchedulerConfig
    from genxd_jax.evaluation.novel_views import evaluate_scenes
    from genxd_jax.pipeline import GenXDPipeline

    del mesh  # the parameters carry it
    unet = nnx.merge(graphdef, params)
    pipe = GenXDPipeline(unet, autoencoder, SchedulerConfig())
    e = config.eval
    return evaluate_scenes(pipe, scenes, num_inference_steps=int(e.num_inference_steps),
                           guidance_scale=float(e.guidance_scale), seed=int(e.seed))


def write_eval(writer, workdir: str, step: int, metrics: dict, results: list) -> None:
    """Eval scalars and grids to TensorBoard, PNG grids and GIFs to ``samples/step_<N>/``, a line to eval.jsonl."""
    import imageio.v3 as iio

    from genxd_jax.evaluation.novel_views import comparison_grid

    writer.write_scalars(step, {f"eval/{k}": v for k, v in metrics.items()})
    out = os.path.join(workdir, "samples", f"step_{step:07d}")
    os.makedirs(out, exist_ok=True)
    grids = {}
    for r in results:
        grid = comparison_grid(r)
        grids[f"eval/{r.name}"] = grid[None]
        iio.imwrite(os.path.join(out, f"{r.name}.png"), grid)
        frames = (np.clip(r.generated, 0, 1) * 255 + 0.5).astype(np.uint8)
        iio.imwrite(os.path.join(out, f"{r.name}.gif"), frames, duration=250, loop=0)
    writer.write_images(step, grids)
    with open(os.path.join(workdir, "samples", "eval.jsonl"), "a") as f:
        f.write(json.dumps({"step": step, **metrics}) + "\n")
    logging.info("eval at step %d: %s", step, ", ".join(f"{k}={v:.3f}" for k, v in sorted(metrics.items())))


# ----------------------------------------------------------------------------------------------------------
# the loop


def make_mesh(config):
    """The training mesh: ``config.mesh`` (-1 filled in) over the first data × fsdp devices."""
    shape = resolve_mesh_shape(config, jax.device_count())
    n = shape["data"] * shape["fsdp"]
    return sharding.make_mesh(shape, devices=jax.devices()[:n])


def initial_state(config, tx, mesh, manager, data_iter=None) -> tuple[nnx.GraphDef, dict]:
    """The state to start from: the workdir's latest checkpoint (restored straight onto ``mesh``, with the data
    iterator), else a fresh state from ``config.init.source`` (``workdir:<dir>`` copies that run's latest
    parameters, optimiser and step starting afresh)."""
    graphdef, abstract = abstract_train_state(config, tx, mesh)
    if manager.latest_step() is not None:
        _, state = checkpointing.restore(manager, abstract, data_iter)
        return graphdef, state
    kind, _, path = config.init.source.partition(":")
    if kind != "workdir":
        return create_train_state(config, tx, mesh, abstract=(graphdef, abstract))
    params = checkpointing.restore_params(path, abstract["params"])
    logging.info("initialised the UNet from the run %s", path)
    return create_train_state(config, tx, mesh, params=params, abstract=(graphdef, abstract))


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains to ``config.num_train_steps`` (resuming from ``workdir`` if it holds a checkpoint).

    Returns ``{"losses": {step: loss}, "final_step": int, "skipped_steps": int, "preempted": bool,
    "eval": {step: metrics}}`` for the steps run by this call (``step`` counts updates, 1-based).
    """
    validate_config(config)
    os.makedirs(workdir, exist_ok=True)
    if config.compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", config.compilation_cache_dir)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    process_index, process_count = jax.process_index(), jax.process_count()
    writer = metric_writers.create_default_writer(workdir, just_logging=process_index > 0)
    if process_index == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))

    mesh = make_mesh(config)
    logging.info("mesh %s over %d processes", dict(mesh.shape), process_count)
    tx, _ = make_optimizer(config)
    dataset = make_train_dataset(config.data, seed=int(config.data.seed), process_index=process_index,
                                 process_count=process_count)
    data_iter = iter(dataset)
    manager = checkpointing.make_manager(workdir, keep=int(config.keep_checkpoints))
    graphdef, state = initial_state(config, tx, mesh, manager, data_iter)
    if process_index == 0:
        parameter_overview.log_parameter_overview(state["params"], msg="UNet parameters")
    start = int(jax.device_get(state["step"]))
    logging.info("training from step %d to %d", start, config.num_train_steps)

    autoencoder = make_autoencoder(config)
    report = periodic_actions.ReportProgress(num_train_steps=config.num_train_steps, writer=writer,
                                             every_steps=config.log_every_steps)
    jit_step, ae_state = make_train_step(config, graphdef, autoencoder, shardings_of(state), mesh)
    with report.timed("compile"), jax.set_mesh(mesh):  # ahead of time, so every process starts stepping together
        started = time.time()
        jit_step = jit_step.lower(state, abstract_batch(config, int(config.data.batch_size) * process_count, mesh),
                                  ae_state).compile()
        logging.info("compiled the train step in %.1f s", time.time() - started)
    if process_count > 1:  # compile times differ; the first collective must not wait out its 30 s gloo deadline
        ocp.multihost.sync_global_processes("genxd_train_step_compiled", timeout=3600)
    eval_every = int(config.eval.every_steps)
    scenes = make_eval_scenes(config.data, num_scenes=int(config.eval.num_scenes),
                              kinds=tuple(config.eval.kinds)) if eval_every else []

    preempt = checkpointing.PreemptionFlag(install=process_count == 1)
    losses, evals, pending = {}, {}, None
    step = start
    try:
        with jax.set_mesh(mesh):
            while step < config.num_train_steps:
                with report.timed("data"):
                    batch = to_global_batch(next(data_iter), mesh)
                state, metrics = jit_step(state, batch, ae_state)
                step += 1
                if pending is not None:  # write metrics one step late (no host sync on the fresh step)
                    _write(writer, losses, *pending, config.log_every_steps)
                pending = (step, metrics)
                report(step, time.time())
                last = step == config.num_train_steps
                every = config.checkpoint_every_steps
                preempted = preempt.requested or (process_count > 1 and manager.reached_preemption(step))
                if last or preempted or (every and step % every == 0):
                    checkpointing.save(manager, step, state, data_iter, config, force=True)
                if preempted:
                    logging.warning("preempted at step %d; checkpoint saved", step)
                    preempt.requested = True
                    break
                if eval_every and (step % eval_every == 0 or last):
                    with report.timed("eval"):
                        params = state["ema"] if ("ema" in state and config.eval.use_ema) else state["params"]
                        m, results = evaluate_novel_views(config, graphdef, params, autoencoder, scenes, mesh)
                    evals[step] = m
                    if process_index == 0:
                        write_eval(writer, workdir, step, m, results)
            if pending is not None:
                _write(writer, losses, *pending, config.log_every_steps)
    finally:
        manager.wait_until_finished()
        manager.close()
        preempt.restore()
        writer.flush()
    skipped = int(jax.device_get(state["skipped"]))
    return {"losses": losses, "final_step": step, "skipped_steps": skipped, "preempted": preempt.requested,
            "eval": evals}


def _write(writer, losses, step, metrics, every):
    metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
    losses[step] = metrics["loss"]
    if step % every == 0:
        writer.write_scalars(step, metrics)
