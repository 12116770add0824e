"""EDM preconditioning for GenXD's v-prediction network, in one place for the sampler and for training.

GenXD (like SVD) uses the EDM parameterisation with σ_data = 1 and a v-prediction network F_θ
(genxd-model.md §11, §16):

    c_skip = σ_d² / (σ² + σ_d²)        c_out = −σ·σ_d / √(σ² + σ_d²)
    c_in   = 1 / √(σ² + σ_d²)          c_noise = 0.25·ln σ
    D(x; σ) = c_skip·x + c_out·F_θ(c_in·x; c_noise)

The Euler–Karras sampler's x̂₀ (diffusers ``EulerDiscreteScheduler.step`` with v_prediction) is exactly
:func:`denoised_from_v`. Training (not released; SVD-Xtend's recipe) samples ln σ ~ N(P_mean, P_std²) and
weights the loss by (σ² + σ_d²)/(σ·σ_d)², which :func:`edm_loss_weight` gives.

σ is a noise standard deviation in latent units (latents already × the VAE scaling factor 0.18215).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SIGMA_DATA = 1.0


def edm_preconditioning(sigma, sigma_data: float = SIGMA_DATA):
    """(c_skip, c_out, c_in, c_noise) for noise levels ``sigma`` (any shape, > 0), each of that shape, in
    float32."""
    sigma = jnp.asarray(sigma, jnp.float32)
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = -sigma * sigma_data / jnp.sqrt(total)
    c_in = 1.0 / jnp.sqrt(total)
    c_noise = 0.25 * jnp.log(sigma)
    return c_skip, c_out, c_in, c_noise


def _expand(c, like):
    c = jnp.asarray(c)
    return c.reshape(c.shape + (1,) * (like.ndim - c.ndim))


def denoised_from_v(model_output, sample, sigma, sigma_data: float = SIGMA_DATA):
    """The denoised estimate x̂₀ = c_skip·x + c_out·F from a v-prediction.

    Args:
      model_output: F_θ, shape (B, ...).
      sample: the noisy latent x (not c_in-scaled), same shape.
      sigma: scalar, or (B,) broadcast over the trailing axes.
    Returns x̂₀ in float32. For σ_d = 1 this is F·(−σ/√(σ²+1)) + x/(σ²+1), diffusers' formula.
    """
    c_skip, c_out, _, _ = edm_preconditioning(sigma, sigma_data)
    sample = jnp.asarray(sample, jnp.float32)
    return _expand(c_out, sample) * jnp.asarray(model_output, jnp.float32) + sample * _expand(c_skip, sample)


def v_target(clean, noise, sigma, sigma_data: float = SIGMA_DATA):
    """The v-prediction target for x = clean + σ·noise: the F with D(x; σ) = clean exactly.

    F = (clean − c_skip·x)/c_out, solved from :func:`denoised_from_v`; any shape, σ (B,) or scalar broadcast.
    """
    c_skip, c_out, _, _ = edm_preconditioning(sigma, sigma_data)
    clean = jnp.asarray(clean, jnp.float32)
    x = clean + _expand(jnp.asarray(sigma, jnp.float32), clean) * jnp.asarray(noise, jnp.float32)
    return (clean - _expand(c_skip, clean) * x) / _expand(c_out, clean)


def edm_loss_weight(sigma, sigma_data: float = SIGMA_DATA):
    """EDM loss weight λ(σ) = (σ² + σ_d²)/(σ·σ_d)² on ‖D(x; σ) − x₀‖² (SVD-Xtend uses it with σ_d = 1)."""
    sigma = jnp.asarray(sigma, jnp.float32)
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def sample_training_sigmas(rng: jax.Array, shape, p_mean: float = 0.7, p_std: float = 1.6):
    """Log-normal training noise levels: σ = exp(P_mean + P_std·n), n ~ N(0, 1). -> float32 array of
    ``shape``.

    Defaults are SVD-Xtend's (P_mean 0.7, P_std 1.6); GenXD's own values are unreleased (genxd-model.md §16).
    """
    if p_std < 0:
        raise ValueError(f"p_std must be non-negative, got {p_std}")
    return jnp.exp(p_mean + p_std * jax.random.normal(rng, shape, jnp.float32))
