"""Diffusion maths shared by sampling and training: EDM preconditioning, the Euler–Karras schedule and the
ODE solvers (Euler, Heun, DPM-Solver++(2M); :mod:`genxd_jax.diffusion.solvers`)."""

from genxd_jax.diffusion import solvers
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
    with_karras_schedule,
)
from genxd_jax.diffusion.solvers import SAMPLERS, num_model_evaluations, solve

__all__ = [
    "SAMPLERS",
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
    "num_model_evaluations",
    "set_timesteps",
    "solve",
    "solvers",
    "v_target",
    "with_karras_schedule",
]
