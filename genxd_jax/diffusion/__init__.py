"""Diffusion maths shared by sampling and training: EDM preconditioning and the Euler–Karras schedule."""

from genxd_jax.diffusion.preconditioning import (
    SIGMA_DATA,
    denoised_from_v,
    edm_loss_weight,
    edm_preconditioning,
    sample_training_sigmas,
    v_target,
)
from genxd_jax.diffusion.scheduler import (
    Schedule,
    SchedulerConfig,
    euler_step,
    karras_sigmas,
    scale_model_input,
    set_timesteps,
)

__all__ = [
    "SIGMA_DATA",
    "Schedule",
    "SchedulerConfig",
    "denoised_from_v",
    "edm_loss_weight",
    "edm_preconditioning",
    "euler_step",
    "karras_sigmas",
    "sample_training_sigmas",
    "scale_model_input",
    "set_timesteps",
    "v_target",
]
