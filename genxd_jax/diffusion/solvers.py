"""ODE solvers for GenXD's EDM / v-prediction probability-flow ODE: Euler, Heun and DPM-Solver++(2M).

All three integrate the same ODE on the same Karras noise levels σ_0 > … > σ_{N−1} > σ_N (= 0 by default,
:func:`genxd_jax.diffusion.set_timesteps`), starting from the same initial latents x_0 = noise ·
``init_noise_sigma``:

    dx/dσ = (x − D(x; σ)) / σ,        D(x; σ) = c_skip(σ)·x + c_out(σ)·F_θ(c_in(σ)·x; 0.25·ln σ)

where D is the (classifier-free guided) denoiser, F_guided = F_u + w·(F_c − F_u) (genxd-model.md §11, §13).

- ``euler``: x ← x + (σ_{i+1} − σ_i)·d_i, d_i = (x − D(x; σ_i))/σ_i. First order; one guided evaluation per
  step. This is the official sampler (diffusers ``EulerDiscreteScheduler``); :class:`GenXDPipeline` keeps its
  own bit-exact copy of this loop as the default.
- ``heun``: Karras et al. 2022, Algorithm 1 with S_churn = 0 (deterministic; = Algorithm 2 without noise
  injection). An Euler predictor x' = x + (σ_{i+1} − σ_i)·d_i, then the trapezoidal corrector
  x ← x + (σ_{i+1} − σ_i)·(d_i + d'_i)/2 with d'_i = (x' − D(x'; σ_{i+1}))/σ_{i+1}, except on a step to
  σ = 0, which stays Euler. Second order; 2N − 1 guided evaluations for N steps ending at σ_N = 0.
- ``dpmpp2m``: DPM-Solver++(2M) (Lu et al. 2022, multistep, data prediction), as in k-diffusion's
  ``sample_dpmpp_2m``: in λ = −ln σ with h = λ_{i+1} − λ_i,
  x ← (σ_{i+1}/σ_i)·x − (e^{−h} − 1)·D̃, where D̃ = D_i on the first step and on a step to σ = 0, otherwise
  D̃ = (1 + 1/(2r))·D_i − 1/(2r)·D_{i−1}, r = h_{i−1}/h_i. Second order; one guided evaluation per step.

Every solver is a pure function of arrays, written as a ``jax.lax.fori_loop`` so that it compiles to one
program, and takes ``denoise_fn(x, i) -> D(x; σ_i)``: the denoiser evaluated at the i-th schedule level (the
pipeline looks up σ_i and the UNet timestep 0.25·ln σ_i by index). σ's unit is latent standard deviation
(latents × the VAE scaling factor).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

SAMPLERS = ("euler", "heun", "dpmpp2m")

DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]


def check_sampler(sampler: str) -> str:
    """Returns ``sampler`` if it is one of :data:`SAMPLERS`, else raises ValueError naming the choices."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    return sampler


def num_model_evaluations(sampler: str, num_steps: int, final_sigma_zero: bool = True) -> int:
    """Guided denoiser evaluations of one sample (each is one UNet call on the batch of 2 with guidance).

    Euler and DPM-Solver++(2M): one per step. Heun: two per step, one on the last step when it ends at σ = 0.
    """
    check_sampler(sampler)
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps}")
    if sampler == "heun":
        return 2 * num_steps - (1 if final_sigma_zero else 0)
    return int(num_steps)


def _progress(progress_fn, i):
    if progress_fn is not None:
        progress_fn(i + 1)


def _num_steps(sigmas, num_steps):
    return sigmas.shape[0] - 1 if num_steps is None else num_steps


def sample_euler(denoise_fn: DenoiseFn, x, sigmas, progress_fn=None, num_steps=None) -> jax.Array:
    """Euler (first order) over ``sigmas`` (N + 1,): x_N from x_0, float32. ``progress_fn(i + 1)`` is called
    (inside the compiled loop, e.g. a ``jax.debug.callback``) after step i. ``num_steps``: see :func:`solve`."""
    sigmas = jnp.asarray(sigmas, jnp.float32)

    def body(i, x):
        s, s_next = sigmas[i], sigmas[i + 1]
        d = (x - denoise_fn(x, i)) / s
        x = x + d * (s_next - s)
        _progress(progress_fn, i)
        return x

    return jax.lax.fori_loop(0, _num_steps(sigmas, num_steps), body, jnp.asarray(x, jnp.float32))


def sample_heun(denoise_fn: DenoiseFn, x, sigmas, progress_fn=None, num_steps=None) -> jax.Array:
    """Deterministic Heun (Karras et al. 2022, Alg. 1 with S_churn = 0): x_N from x_0 (see the module doc).

    Written as one loop over the 2N − 1 (2N when σ_N > 0) denoiser evaluations, alternating predictor and
    corrector, so that ``denoise_fn`` (the UNet) appears once in the compiled program: compiling a second call
    site would double the compile time of the full model.
    """
    sigmas = jnp.asarray(sigmas, jnp.float32)
    n = _num_steps(sigmas, num_steps)
    num_evals = 2 * n - 1 + (sigmas[n] > 0).astype(jnp.int32)

    def body(_, carry):
        x, y, d_saved, i, phase = carry  # phase 0: predictor at (x, σ_i); 1: corrector at (y, σ_{i+1})
        s, s_next = sigmas[i], sigmas[i + 1]
        level = i + phase
        d = (y - denoise_fn(y, level)) / sigmas[level]
        x_euler = x + d * (s_next - s)
        x_heun = x + (0.5 * (d_saved + d)) * (s_next - s)
        predict = phase == 0
        to_corrector = predict & (s_next > 0)
        x = jnp.where(predict, jnp.where(to_corrector, x, x_euler), x_heun)
        y = jnp.where(to_corrector, x_euler, x)
        if progress_fn is not None:
            jax.lax.cond(to_corrector, lambda: None, lambda: progress_fn(i + 1))
        return x, y, d, jnp.where(to_corrector, i, i + 1), to_corrector.astype(jnp.int32)

    x = jnp.asarray(x, jnp.float32)
    carry = (x, x, jnp.zeros_like(x), jnp.int32(0), jnp.int32(0))
    return jax.lax.fori_loop(0, num_evals, body, carry)[0]


def sample_dpmpp_2m(denoise_fn: DenoiseFn, x, sigmas, progress_fn=None, num_steps=None) -> jax.Array:
    """DPM-Solver++(2M) in λ = −ln σ: x_N from x_0 (see the module doc). First order on the first step and on
    a step to σ = 0 (where it returns D(x; σ_{N−1}), as Euler does)."""
    sigmas = jnp.asarray(sigmas, jnp.float32)

    def body(i, carry):
        x, old_denoised = carry
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = denoise_fn(x, i)
        to_zero = s_next <= 0
        safe_next = jnp.where(to_zero, s, s_next)  # keeps the unused branch finite
        lam, lam_next = -jnp.log(s), -jnp.log(safe_next)
        h = lam_next - lam
        s_prev = sigmas[jnp.maximum(i - 1, 0)]
        h_last = lam - (-jnp.log(s_prev))
        second = (i > 0) & ~to_zero
        r = jnp.where(second, h_last / jnp.where(second, h, 1.0), 1.0)
        d_hat = jnp.where(second, (1.0 + 0.5 / r) * denoised - (0.5 / r) * old_denoised, denoised)
        x_next = (safe_next / s) * x - jnp.expm1(-h) * d_hat
        x = jnp.where(to_zero, denoised, x_next)
        _progress(progress_fn, i)
        return x, denoised

    x = jnp.asarray(x, jnp.float32)
    x, _ = jax.lax.fori_loop(0, _num_steps(sigmas, num_steps), body, (x, jnp.zeros_like(x)))
    return x


_SOLVERS = {"euler": sample_euler, "heun": sample_heun, "dpmpp2m": sample_dpmpp_2m}


def solve(sampler: str, denoise_fn: DenoiseFn, x, sigmas, progress_fn=None, num_steps=None) -> jax.Array:
    """Integrates the ODE with ``sampler`` (one of :data:`SAMPLERS`) from x_0 at σ_0 to σ_N.

    Args:
      sampler: "euler", "heun" or "dpmpp2m".
      denoise_fn: ``(x, i) -> D(x; σ_i)``, x of any shape, float32.
      x: the initial latents at σ_0 (noise · init_noise_sigma).
      sigmas: (N + 1,) decreasing noise levels, the last 0 or σ_min.
      progress_fn: optional ``(steps_done) -> None`` called inside the loop after each step.
      num_steps: optional N, a traced int32 allowed: integrate over ``sigmas[:N + 1]`` only (the rest is
        padding). One compiled program then serves every step count up to ``len(sigmas) − 1`` (the loop
        becomes a ``while_loop``; not reverse-differentiable).
    Returns x at σ_N, float32, the shape of ``x``.
    """
    return _SOLVERS[check_sampler(sampler)](denoise_fn, x, sigmas, progress_fn, num_steps)
