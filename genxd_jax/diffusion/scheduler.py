"""GenXD's sampler schedule: diffusers ``EulerDiscreteScheduler`` with Karras sigmas, v-prediction and
continuous timesteps, as configured by the released ``scheduler/scheduler_config.json`` (genxd-model.md §11).

- ``set_timesteps(N)``: σ_i = (σ_max^{1/ρ} + i/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i = 0…N−1 (ρ = 7),
  computed in float64 and stored in float32, then σ_N = 0 (``final_sigmas_type`` "zero").
- The UNet's timestep is t_i = 0.25·ln σ_i (= the EDM c_noise), in float32.
- ``init_noise_sigma`` = √(σ_max² + 1) for "leading"/other spacings, σ_max for "linspace"/"trailing".
- ``scale_model_input``: x / √(σ² + 1) (c_in); ``step``: Euler from σ_i to σ_{i+1} on the v-prediction's x̂₀.

Everything here is a pure function of arrays, usable inside ``jax.lax.fori_loop``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from genxd_jax.diffusion.preconditioning import denoised_from_v

CONFIG_NAME = "scheduler_config.json"


@dataclasses.dataclass(frozen=True)
class SchedulerConfig:
    """The fields of ``scheduler_config.json`` that the sampler reads; unknown keys are kept in ``extra``."""

    sigma_min: float = 0.002
    sigma_max: float = 700.0
    rho: float = 7.0
    prediction_type: str = "v_prediction"
    timestep_type: str = "continuous"
    use_karras_sigmas: bool = True
    timestep_spacing: str = "leading"
    final_sigmas_type: str = "zero"
    extra: dict = dataclasses.field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, raw: dict) -> SchedulerConfig:
        """Parses a diffusers scheduler config dict; keys it does not use are tolerated (kept in
        ``extra``)."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: raw[k] for k in names if k in raw and raw[k] is not None}
        config = cls(**known, extra={k: v for k, v in raw.items() if k not in names})
        config.validate()
        return config

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> SchedulerConfig:
        """Reads ``<path>/scheduler_config.json``; ``path`` is the ``scheduler/`` folder or the file."""
        path = os.fspath(path)
        file = os.path.join(path, CONFIG_NAME) if os.path.isdir(path) else path
        if not os.path.isfile(file):
            raise FileNotFoundError(f"scheduler config not found: {file}")
        with open(file) as f:
            try:
                raw = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{file} is not valid JSON: {e}") from e
        return cls.from_dict(raw)

    def validate(self) -> None:
        """Rejects configurations this sampler does not implement, naming the key."""
        if self.prediction_type != "v_prediction":
            raise ValueError(
                f"prediction_type {self.prediction_type!r} is not supported (GenXD uses v_prediction)"
            )
        if self.timestep_type != "continuous":
            raise ValueError(f"timestep_type {self.timestep_type!r} is not supported (GenXD uses continuous)")
        if not self.use_karras_sigmas:
            raise ValueError("use_karras_sigmas must be true (GenXD's Euler–Karras schedule)")
        if self.final_sigmas_type not in ("zero", "sigma_min"):
            raise ValueError(f"final_sigmas_type {self.final_sigmas_type!r} is not supported")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min}, {self.sigma_max}")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        return {**self.extra, **d}


def with_karras_schedule(config: SchedulerConfig, spec: str | None) -> SchedulerConfig:
    """``config`` with its Karras schedule replaced by ``spec`` = ``"SIGMA_MAX:SIGMA_MIN:RHO"`` (None: unchanged).

    The released schedule is 700:0.002:7. A lower σ_max starts from unit noise × √(σ_max² + 1); a larger σ_min
    ends with one jump from σ_min to the denoised latents. benchmarks/README.md ("Sampler quality vs steps")
    measures which schedules keep the result close to the released 25-step sampler in fewer steps.
    """
    if spec is None:
        return config
    try:
        sigma_max, sigma_min, rho = (float(v) for v in str(spec).split(":"))
    except ValueError:
        raise ValueError(f"schedule {spec!r} is not SIGMA_MAX:SIGMA_MIN:RHO (the released one is 700:0.002:7)") \
            from None
    if not (0 < sigma_min < sigma_max and rho > 0 and np.isfinite(sigma_max) and np.isfinite(rho)):
        raise ValueError(f"schedule {spec!r} needs 0 < SIGMA_MIN < SIGMA_MAX and RHO > 0")
    return dataclasses.replace(config, sigma_max=sigma_max, sigma_min=sigma_min, rho=rho)


class Schedule(NamedTuple):
    """A concrete N-step schedule.

    sigmas: (N + 1,) float32, decreasing, last = 0 (or σ_min).
    timesteps: (N,) float32, the UNet's 0.25·ln σ_i.
    init_noise_sigma: float, the factor applied to unit Gaussian initial latents.
    """

    sigmas: np.ndarray
    timesteps: np.ndarray
    init_noise_sigma: float


def karras_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    """Karras et al. (2022) noise levels (num_steps,), float64, from σ_max down to σ_min inclusive."""
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_inference_steps must be a positive integer, got {num_steps}")
    ramp = np.linspace(0.0, 1.0, int(num_steps))
    max_inv, min_inv = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    return (max_inv + ramp * (min_inv - max_inv)) ** rho


def set_timesteps(config: SchedulerConfig, num_steps: int) -> Schedule:
    """The diffusers ``set_timesteps(num_steps)`` result for ``config``."""
    sig = karras_sigmas(num_steps, config.sigma_min, config.sigma_max, config.rho).astype(np.float32)
    timesteps = (np.float32(0.25) * np.log(sig)).astype(np.float32)
    last = np.float32(0.0) if config.final_sigmas_type == "zero" else sig[-1]
    sigmas = np.concatenate([sig, [last]]).astype(np.float32)
    max_sigma = np.float32(sig.max())
    if config.timestep_spacing in ("linspace", "trailing"):
        init = float(max_sigma)
    else:
        init = float(np.sqrt(max_sigma**2 + np.float32(1.0), dtype=np.float32))
    return Schedule(sigmas=sigmas, timesteps=timesteps, init_noise_sigma=init)


def scale_model_input(sample, sigma):
    """c_in scaling x / √(σ² + 1) (float32)."""
    sigma = jnp.asarray(sigma, jnp.float32)
    return jnp.asarray(sample, jnp.float32) / jnp.sqrt(sigma**2 + 1.0)


def euler_step(model_output, sample, sigma, sigma_next):
    """One Euler step of the probability-flow ODE from σ to σ_next (s_churn = 0), float32.

    x̂₀ = :func:`denoised_from_v`; x ← x + (x − x̂₀)/σ · (σ_next − σ). With σ_next = 0 this returns x̂₀.
    """
    sample = jnp.asarray(sample, jnp.float32)
    sigma = jnp.asarray(sigma, jnp.float32)
    denoised = denoised_from_v(model_output, sample, sigma)
    derivative = (sample - denoised) / sigma
    return sample + derivative * (jnp.asarray(sigma_next, jnp.float32) - sigma)
