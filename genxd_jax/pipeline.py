"""GenXD sampling: masked latent conditioning, Plücker rays, classifier-free guidance, Euler–Karras loop.

    from genxd_jax.pipeline import GenXDPipeline
    pipe = GenXDPipeline.from_pretrained("ckpt")      # released layout: unet/, vae/, scheduler/
    frames = pipe(context_images, context_index, target_c2w, intrinsics, num_inference_steps=25,
                  guidance_scale=3.0, indicator=2, motion_strength=0.5, init_noise=None, rng=None)

This reproduces the official ``GenXDPipeline.__call__`` (genxd-model.md §13) whenever guidance_scale > 1:

1. Context latents: VAE posterior mode of the context images (2x − 1) × the scaling factor (0.18215).
2. Rays: Plücker maps at latent resolution of every target camera relative to the *first* context camera,
   ``inv(target_c2w[context_index[0]]) · target_c2w``; zero in video mode (indicator 1).
3. The UNet input of every step is, channels last, [x·c_in with context frames replaced by their clean latents
   (4) | zeros (4) | rays (6) | context mask (1)] = 15 channels (:func:`unet_input`).
4. With guidance, the batch is [unconditional, conditional]: the unconditional row has zero context latents,
   rays, added-time ids and motion, but the same mask; F = F_u + w·(F_c − F_u).
5. Euler steps on all frames (context frames included, as the official does); at the end the context frames
   are replaced by their clean latents, then decoded (/0.18215, temporal VAE decoder in chunks) to [0, 1].

Extension: guidance_scale ≤ 1 runs a single conditional pass per step (the official pipeline crashes there).
Extension: ``sampler="heun"`` or ``"dpmpp2m"`` integrates the same ODE to second order on the same schedule
(:mod:`genxd_jax.diffusion.solvers`); ``"euler"`` (the default) is the official loop, unchanged.

The whole denoising loop is one compiled program per (shape, steps, guidance on/off, sampler): a
``jax.lax.fori_loop`` over the schedule, with both guidance halves in one batch of 2. The guidance scale,
indicator, motion strength and conditioning are traced values, so changing them (or the number of context
views) does not recompile. Progress is reported from inside the compiled loop with ``jax.debug.callback``
(only when a progress callback is requested; the benchmark path has none).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genxd_jax.diffusion.preconditioning import denoised_from_v
from genxd_jax.diffusion.scheduler import (
    Schedule,
    SchedulerConfig,
    euler_step,
    scale_model_input,
    set_timesteps,
)
from genxd_jax.diffusion.solvers import check_sampler, solve
from genxd_jax.geometry.cameras import broadcast_intrinsics, relative_poses, validate_c2w
from genxd_jax.geometry.rays import plucker_rays

LATENT_CHANNELS = 4
RAY_CHANNELS = 6
INDICATORS = {0: "3D (multi-view)", 1: "video", 2: "4D"}


class Conditioning(NamedTuple):
    """Per-sample conditioning, constant over the denoising steps. B = 2 with guidance (unconditional row
    first), 1 without; F frames; (h, w) the latent size.

    context_latents: (B, F, h, w, 4) clean context latents (× scaling factor) at the context frames, else 0;
      all 0 in the unconditional row.
    image_latents: (B, F, h, w, 10) = [zeros (4) | Plücker rays (6)]; rays 0 in the unconditional row and in
      video mode.
    mask: (B, F, h, w, 1) 1 at context frames; identical in both rows.
    added_time_ids: (B, F, 2) = [0, camera flag (0 for video, else 1)]; 0 in the unconditional row.
    motion: (B,) motion strength; 0 in the unconditional row.
    indicator: (B,) int32, 0 = 3D, 1 = video, 2 = 4D.
    """

    context_latents: jax.Array
    image_latents: jax.Array
    mask: jax.Array
    added_time_ids: jax.Array
    motion: jax.Array
    indicator: jax.Array


class SamplingInputs(NamedTuple):
    """Everything the denoising loop consumes: the conditioning, the initial latents x_0 = noise ×
    init_noise_sigma (F, h, w, 4) float32, the schedule, and whether guidance is on."""

    conditioning: Conditioning
    latents: jax.Array
    schedule: Schedule
    guidance: bool


# ----------------------------------------------------------------------------------------------------------
# Pure building blocks (testable without a network).


def check_context_index(context_index, num_frames: int) -> np.ndarray:
    """Validates the frame slots of the context views: (V,) distinct integers in [0, F), 1 ≤ V ≤ F − 1."""
    idx = np.asarray(context_index)
    if idx.ndim != 1 or idx.size == 0:
        raise ValueError(f"context_index must be a non-empty 1-D array of frame slots, got shape {idx.shape}")
    if not np.issubdtype(idx.dtype, np.integer):
        if not np.all(np.equal(np.mod(idx, 1), 0)):
            raise ValueError(f"context_index must hold integers, got {idx}")
        idx = idx.astype(np.int64)
    if num_frames < 2:
        raise ValueError(f"GenXD needs at least 2 frames (context + target), got {num_frames}")
    if idx.size > num_frames - 1:
        raise ValueError(
            f"too many context views: {idx.size} for {num_frames} frames (at most {num_frames - 1}; "
            "at least one frame must be generated)"
        )
    if np.any(idx < 0) or np.any(idx >= num_frames):
        raise ValueError(f"context_index {idx.tolist()} out of range for {num_frames} frames")
    if len(np.unique(idx)) != idx.size:
        raise ValueError(f"context_index {idx.tolist()} repeats a frame slot")
    return idx.astype(np.int32)


def context_mask(context_index, num_frames: int) -> np.ndarray:
    """One-hot over frames of the context slots: (F,) float32."""
    idx = check_context_index(context_index, num_frames)
    mask = np.zeros(num_frames, np.float32)
    mask[idx] = 1.0
    return mask


def camera_rays(target_c2w, intrinsics, context_index, latent_size: tuple[int, int]) -> jax.Array:
    """Plücker rays (F, h, w, 6) of the target cameras relative to the first context camera.

    target_c2w (F, 4, 4) OpenCV c2w; intrinsics (3, 3) or (F, 3, 3) normalised; ``context_index[0]`` picks the
    reference camera (genxd-model.md §13.3 steps 6–7).
    """
    c2w = validate_c2w(target_c2w, name="target_c2w")
    if c2w.ndim != 3:
        raise ValueError(f"target_c2w must be (F, 4, 4), got {c2w.shape}")
    f = c2w.shape[0]
    idx = check_context_index(context_index, f)
    k = broadcast_intrinsics(intrinsics, f)
    rel = relative_poses(c2w, c2w[idx[0]]).astype(np.float32)
    return plucker_rays(rel, k.astype(np.float32), *latent_size)


def build_conditioning(
    context_latents, context_index, rays, *, indicator: int, motion_strength: float, guidance: bool
) -> Conditioning:
    """Assembles :class:`Conditioning` from the scaled context latents (V, h, w, 4), their frame slots (V,)
    and the rays (F, h, w, 6); see §13.3–13.6 of genxd-model.md for each tensor."""
    rays = jnp.asarray(rays, jnp.float32)
    f, h, w, _ = rays.shape
    idx = check_context_index(context_index, f)
    lat = jnp.asarray(context_latents, jnp.float32)
    if lat.shape != (idx.size, h, w, LATENT_CHANNELS):
        raise ValueError(f"context latents {lat.shape} do not match {idx.size} views at latent size {(h, w)}")
    indicator = check_indicator(indicator)
    full = jnp.zeros((f, h, w, LATENT_CHANNELS), jnp.float32).at[idx].set(lat)
    mask = jnp.broadcast_to(jnp.asarray(context_mask(idx, f))[:, None, None, None], (f, h, w, 1))
    if indicator == 1:
        rays = jnp.zeros_like(rays)
    image_latents = jnp.concatenate([jnp.zeros((f, h, w, LATENT_CHANNELS), jnp.float32), rays], axis=-1)
    ids = jnp.zeros((f, 2), jnp.float32).at[:, 1].set(0.0 if indicator == 1 else 1.0)
    motion = jnp.full((1,), motion_strength, jnp.float32)
    cond = Conditioning(
        full[None], image_latents[None], mask[None], ids[None], motion, jnp.full((1,), indicator, jnp.int32)
    )
    if not guidance:
        return cond
    zero = jnp.zeros_like
    return Conditioning(
        context_latents=jnp.concatenate([zero(cond.context_latents), cond.context_latents]),
        image_latents=jnp.concatenate([zero(cond.image_latents), cond.image_latents]),
        mask=jnp.concatenate([cond.mask, cond.mask]),
        added_time_ids=jnp.concatenate([zero(cond.added_time_ids), cond.added_time_ids]),
        motion=jnp.concatenate([zero(cond.motion), cond.motion]),
        indicator=jnp.concatenate([cond.indicator, cond.indicator]),
    )


def check_indicator(indicator) -> int:
    if int(indicator) != indicator or int(indicator) not in INDICATORS:
        raise ValueError(f"indicator must be 0 (3D), 1 (video) or 2 (4D), got {indicator}")
    return int(indicator)


def unet_input(latents, sigma, cond: Conditioning) -> jax.Array:
    """The UNet input of one step: (B, F, h, w, 15) float32 from the current latents x (F, h, w, 4) at σ.

    [x·c_in, context frames replaced by the clean context latents (not c_in-scaled) | image latents (10) |
    mask].
    """
    b = cond.mask.shape[0]
    x = jnp.broadcast_to(scale_model_input(latents, sigma)[None], (b,) + latents.shape)
    m = cond.mask
    x = x * (1.0 - m) + cond.context_latents * m
    return jnp.concatenate([x, cond.image_latents, m], axis=-1)


def guided(model_output, guidance_scale):
    """Combines the raw output (B, ...): with B = 2, F_u + w·(F_c − F_u); with B = 1 the output itself."""
    out = jnp.asarray(model_output, jnp.float32)
    if out.shape[0] == 1:
        return out[0]
    return out[0] + guidance_scale * (out[1] - out[0])


def finalize_latents(latents, cond: Conditioning) -> jax.Array:
    """Puts the clean (conditional-row) context latents back into the final latents (F, h, w, 4)."""
    m = cond.mask[-1]
    return latents * (1.0 - m) + cond.context_latents[-1] * m


# ----------------------------------------------------------------------------------------------------------
# Compiled programs. GraphDefs are static (hashable), so two pipelines with the same architecture share them.

_progress_handlers: list[Callable[[int], None]] = []


def _report_progress(step) -> None:
    for handler in list(_progress_handlers):
        handler(int(step))


@functools.partial(jax.jit, static_argnames=("graphdef", "progress", "sampler"))
def _denoise(graphdef, state, latents, sigmas, timesteps, cond: Conditioning, guidance_scale, progress: bool,
             sampler: str = "euler"):
    """x_N from x_0 (F, h, w, 4): a fori_loop over the N steps of (sigmas (N+1,), timesteps (N,)).

    ``sampler`` "euler" is the official loop, kept verbatim (the parity fixtures check it bit for bit); "heun"
    and "dpmpp2m" integrate the same ODE with :mod:`genxd_jax.diffusion.solvers`. The arrays follow their
    input shardings: with sharded UNet parameters (and the other inputs replicated on the same mesh) XLA
    partitions the whole loop, nothing is gathered.
    """
    unet = nnx.merge(graphdef, state)
    report = (lambda n: jax.debug.callback(_report_progress, n)) if progress else None

    if sampler != "euler":
        num_levels = timesteps.shape[0]

        def denoiser(x, i):
            # Heun's corrector evaluates at σ_{i+1}; its timestep is 0.25·ln σ_{i+1} (σ_{i+1} > 0 there).
            t = jnp.where(i < num_levels, timesteps[jnp.minimum(i, num_levels - 1)], 0.25 * jnp.log(sigmas[i]))
            raw = unet(unet_input(x, sigmas[i], cond), t, cond.added_time_ids, cond.indicator, cond.motion)
            return denoised_from_v(guided(raw, guidance_scale), x, sigmas[i])

        x = solve(sampler, denoiser, jnp.asarray(latents, jnp.float32), sigmas, report)
        return finalize_latents(x, cond)

    def body(i, x):
        inp = unet_input(x, sigmas[i], cond)
        raw = unet(inp, timesteps[i], cond.added_time_ids, cond.indicator, cond.motion)
        x = euler_step(guided(raw, guidance_scale), x, sigmas[i], sigmas[i + 1])
        if progress:
            jax.debug.callback(_report_progress, i + 1)
        return x

    x = jax.lax.fori_loop(0, timesteps.shape[0], body, jnp.asarray(latents, jnp.float32))
    return finalize_latents(x, cond)


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _encode_mode(graphdef, state, images):
    mean, _ = nnx.merge(graphdef, state).encode(images)
    return mean.astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("graphdef", "num_frames"))
def _decode(graphdef, state, latents, num_frames: int):
    return nnx.merge(graphdef, state).decode(latents, num_frames=num_frames).astype(jnp.float32)


# ----------------------------------------------------------------------------------------------------------


def parameter_mesh(state):
    """The mesh of the first parameter placed with a multi-device ``NamedSharding`` (e.g. FSDP-sharded
    training parameters), else None. With one, :meth:`GenXDPipeline.denoise` runs the compiled loop on the
    parameters where they are: the program is partitioned by their shardings (XLA SPMD), and the latents,
    schedule and conditioning are replicated onto the same mesh; no parameter is gathered onto every device
    up front."""
    for leaf in jax.tree.leaves(state):
        sh = getattr(leaf, "sharding", None)
        if isinstance(sh, jax.sharding.NamedSharding) and sh.mesh.size > 1:
            return sh.mesh
    return None


def _check_checkpoint(path: pathlib.Path) -> None:
    """Fails early, listing every missing piece, if ``path`` is not a complete released-layout checkpoint."""
    from genxd_jax.convert.safetensors_io import INDEX, WEIGHTS, CheckpointError

    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {path} does not exist")
    problems = []
    for sub in ("unet", "vae"):
        d = path / sub
        if not (d / "config.json").is_file():
            problems.append(f"{sub}/config.json")
        if not ((d / WEIGHTS).is_file() or (d / INDEX).is_file()):
            problems.append(f"{sub}/{WEIGHTS}")
    if not (path / "scheduler" / "scheduler_config.json").is_file():
        problems.append("scheduler/scheduler_config.json")
    if problems:
        raise CheckpointError(
            f"incomplete GenXD checkpoint at {path}: missing {', '.join(problems)} (expected "
            "the released layout unet/, vae/, scheduler/)"
        )


@dataclasses.dataclass
class GenXDPipeline:
    """The GenXD sampler around a UNet, a VAE and the scheduler config. See the module docstring."""

    unet: nnx.Module
    vae: nnx.Module
    scheduler: SchedulerConfig
    decode_chunk_size: int | None = None

    def __post_init__(self):
        unet = self.unet
        if getattr(unet, "remat_policy", None):
            # Sampling has no backward pass, and nnx.remat cannot run inside the compiled loop: sample with a
            # copy of the module (same arrays) whose rematerialisation is off; the caller's module is untouched.
            unet = nnx.merge(*nnx.split(unet))
            unet.remat_policy = None
        self._unet_graph, self._unet_state = nnx.split(unet)
        self._mesh = parameter_mesh(self._unet_state)
        self._vae_graph, self._vae_state = nnx.split(self.vae)
        self.scaling_factor = float(self.vae.config.scaling_factor)
        self.latent_factor = int(self.vae.downsample_factor)
        self.size_multiple = self.latent_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        dtype=jnp.float32,
        compute_dtype=None,
        vae_dtype=jnp.float32,
        decode_chunk_size: int | None = None,
        attention_impl: str | None = None,
    ) -> GenXDPipeline:
        """Loads ``path/{unet,vae,scheduler}``. ``dtype``/``compute_dtype`` apply to the UNet (float32
        default, as the official inference); the VAE stays float32 unless ``vae_dtype`` says otherwise."""
        from genxd_jax.models import load_unet, load_vae

        path = pathlib.Path(path)
        _check_checkpoint(path)
        scheduler = SchedulerConfig.from_pretrained(path / "scheduler")
        unet = load_unet(
            path / "unet", dtype=dtype, compute_dtype=compute_dtype, attention_impl=attention_impl
        )
        vae = load_vae(path / "vae", dtype=vae_dtype)
        return cls(unet, vae, scheduler, decode_chunk_size=decode_chunk_size)

    # -- stages ---------------------------------------------------------------------------------------------

    def encode_context(self, context_images) -> jax.Array:
        """Images (V, H, W, 3) in [0, 1] -> clean latents (V, H/8, W/8, 4): posterior mode × scaling
        factor."""
        images = jnp.asarray(context_images, jnp.float32) * 2.0 - 1.0
        return _encode_mode(self._vae_graph, self._vae_state, images) * self.scaling_factor

    def decode(self, latents, decode_chunk_size: int | None = None) -> np.ndarray:
        """Latents (F, h, w, 4) (× scaling factor) -> frames (F, 8h, 8w, 3) in [0, 1], decoded in chunks of
        ``decode_chunk_size`` frames (default: all F at once, as the official); the temporal decoder mixes
        frames within a chunk only."""
        latents = jnp.asarray(latents, jnp.float32) / self.scaling_factor
        f = latents.shape[0]
        chunk = decode_chunk_size or self.decode_chunk_size or f
        if chunk < 1:
            raise ValueError(f"decode_chunk_size must be positive, got {chunk}")
        parts = [
            _decode(self._vae_graph, self._vae_state, latents[i : i + chunk], num_frames=min(chunk, f - i))
            for i in range(0, f, chunk)
        ]
        frames = jnp.concatenate(parts, axis=0)
        return np.asarray(jnp.clip(frames / 2.0 + 0.5, 0.0, 1.0))

    def prepare(
        self,
        context_images,
        context_index,
        target_c2w,
        intrinsics,
        *,
        num_inference_steps: int = 25,
        guidance_scale: float = 3.0,
        indicator: int = 2,
        motion_strength: float = 0.5,
        init_noise=None,
        rng=None,
    ) -> SamplingInputs:
        """Validates the inputs and builds the conditioning, the schedule and the initial latents."""
        images = _check_images(context_images)
        v, height, width, _ = images.shape
        if height % self.size_multiple or width % self.size_multiple:
            raise ValueError(
                f"image size {height}×{width} must be a multiple of {self.size_multiple} for this "
                "model (VAE ×8, then the UNet's downsampling)"
            )
        c2w = validate_c2w(target_c2w, name="target_c2w")
        if c2w.ndim != 3:
            raise ValueError(f"target_c2w must be (F, 4, 4), got {c2w.shape}")
        f = c2w.shape[0]
        idx = check_context_index(context_index, f)
        if idx.size != v:
            raise ValueError(f"{v} context images but {idx.size} context_index entries")
        check_indicator(indicator)
        if not np.isfinite(guidance_scale) or not np.isfinite(motion_strength):
            raise ValueError("guidance_scale and motion_strength must be finite")
        latent_size = (height // self.latent_factor, width // self.latent_factor)
        schedule = set_timesteps(self.scheduler, num_inference_steps)
        shape = (f, *latent_size, LATENT_CHANNELS)
        if init_noise is None:
            rng = jax.random.key(0) if rng is None else rng
            noise = jax.random.normal(rng, shape, jnp.float32)
        else:
            noise = jnp.asarray(init_noise, jnp.float32)
            if noise.shape != shape:
                raise ValueError(f"init_noise must have shape {shape} (F, H/8, W/8, 4), got {noise.shape}")
        guidance = bool(guidance_scale > 1.0)
        rays = camera_rays(c2w, intrinsics, idx, latent_size)
        cond = build_conditioning(
            self.encode_context(images),
            idx,
            rays,
            indicator=indicator,
            motion_strength=motion_strength,
            guidance=guidance,
        )
        return SamplingInputs(cond, noise * np.float32(schedule.init_noise_sigma), schedule, guidance)

    def denoise(
        self,
        inputs: SamplingInputs,
        guidance_scale: float,
        progress: Callable[[int], None] | None = None,
        sampler: str = "euler",
    ) -> jax.Array:
        """Runs the compiled loop: final latents (F, h, w, 4) with the context frames restored.

        ``progress``, if given, is called on the host with the number of finished steps after each step.
        ``sampler``: "euler" (the official sampler, default), "heun" or "dpmpp2m"
        (:mod:`genxd_jax.diffusion.solvers`), all on the schedule in ``inputs``.
        """
        check_sampler(sampler)
        args = (
            inputs.latents,
            jnp.asarray(inputs.schedule.sigmas),
            jnp.asarray(inputs.schedule.timesteps),
            inputs.conditioning,
            jnp.float32(guidance_scale),
        )
        if self._mesh is not None:  # sharded parameters: replicate the small inputs on their mesh, gather nothing
            args = jax.device_put(args, jax.sharding.NamedSharding(self._mesh, jax.sharding.PartitionSpec()))
        if progress is not None:
            _progress_handlers.append(progress)
        try:
            out = _denoise(
                self._unet_graph,
                self._unet_state,
                *args,
                progress=progress is not None,
                sampler=sampler,
            )
            out = jax.block_until_ready(out)
            if progress is not None:
                jax.effects_barrier()
        finally:
            if progress is not None:
                _progress_handlers.remove(progress)
        return out

    def __call__(
        self,
        context_images,
        context_index,
        target_c2w,
        intrinsics,
        num_inference_steps: int = 25,
        guidance_scale: float = 3.0,
        indicator: int = 2,
        motion_strength: float = 0.5,
        init_noise=None,
        rng=None,
        *,
        decode_chunk_size: int | None = None,
        progress: Callable[[int], None] | None = None,
        sampler: str = "euler",
    ) -> np.ndarray:
        """Generates F frames.

        Args:
          context_images: (V, H, W, 3) float in [0, 1] (uint8 is accepted and divided by 255).
          context_index: (V,) the frame slot of each context view, 1 ≤ V ≤ F − 1.
          target_c2w: (F, 4, 4) OpenCV camera-to-world poses of all frames (context slots included).
          intrinsics: (3, 3) or (F, 3, 3) normalised intrinsics.
          num_inference_steps: Euler–Karras steps.
          guidance_scale: CFG weight w; ≤ 1 turns guidance off (one conditional pass per step).
          indicator: 0 = 3D, 1 = video (rays zeroed, camera flag 0), 2 = 4D.
          motion_strength: the motion embedding's input.
          init_noise: (F, H/8, W/8, 4) unit Gaussian (scaled by the scheduler's initial sigma here), or None
            to draw it from ``rng`` (default ``jax.random.key(0)``).
          decode_chunk_size: frames per VAE decoder call (default all).
          progress: optional host callback, called with the number of finished steps.
          sampler: ODE solver on the same Karras schedule: "euler" (official, default; N guided UNet
            evaluations), "heun" (2N − 1) or "dpmpp2m" (N); see :mod:`genxd_jax.diffusion.solvers`.
        Returns:
          frames (F, H, W, 3) float32 numpy in [0, 1]; the context slots hold VAE reconstructions of the
          inputs.
        """
        check_sampler(sampler)
        inputs = self.prepare(
            context_images,
            context_index,
            target_c2w,
            intrinsics,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            indicator=indicator,
            motion_strength=motion_strength,
            init_noise=init_noise,
            rng=rng,
        )
        latents = self.denoise(inputs, guidance_scale, progress=progress, sampler=sampler)
        return self.decode(latents, decode_chunk_size)


def _check_images(images) -> np.ndarray:
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"context_images must be (V, H, W, 3) RGB, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    arr = arr.astype(np.float32)
    if not np.all(np.isfinite(arr)):
        raise ValueError("context_images contain non-finite values")
    if arr.min() < -1e-3 or arr.max() > 1.0 + 1e-3:
        raise ValueError(f"context_images must be in [0, 1], got range [{arr.min():.3g}, {arr.max():.3g}]")
    return np.clip(arr, 0.0, 1.0)


def pipeline_from_workdir(workdir: str, config=None, *, use_ema: bool = True):
    """A :class:`GenXDPipeline` from a ``genxd_jax.main`` training workdir, on one device.

    ``config`` defaults to the run's ``config.json``; the UNet gets the latest checkpoint's EMA parameters
    (``use_ema`` and the run kept an EMA) or its raw ones, the autoencoder is the configured one, the scheduler
    the default. Returns (pipeline, config, step, "ema" | "params").
    """
    import json

    import ml_collections

    from genxd_jax import checkpointing, sharding
    from genxd_jax.diffusion.scheduler import SchedulerConfig
    from genxd_jax.train_step import abstract_train_state, make_autoencoder, make_optimizer

    if config is None:
        config = ml_collections.ConfigDict(json.loads(pathlib.Path(workdir, "config.json").read_text()))
    mesh = sharding.make_mesh({"data": 1, "fsdp": 1}, devices=jax.devices()[:1])
    tx, _ = make_optimizer(config)
    graphdef, abstract = abstract_train_state(config, tx, mesh)
    key = "ema" if use_ema and "ema" in abstract else "params"
    params, step = checkpointing.restore_item(workdir, key, abstract[key])
    unet = nnx.merge(graphdef, params)
    return GenXDPipeline(unet, make_autoencoder(config), SchedulerConfig()), config, step, key
