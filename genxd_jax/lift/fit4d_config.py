"""Config of :func:`genxd_jax.lift.fit4d.fit_dynamic_scene`: 4D Gaussian splatting with a HexPlane deformation.

``configs/lift4d.py`` re-exports :func:`get_config` for ``--config=configs/lift4d.py:<variant>`` flags; the
definition lives here so that the installed package has its defaults. Every field is read by
:mod:`genxd_jax.lift.fit4d`.

Variants (hustvl/4DGaussians ``arguments/__init__.py`` and ``arguments/dnerf/dnerf_default.py``; GenXD Table 3):

    object: the paper's 4D-object setting (one generated orbit clip, object-centred): 4DGaussians' D-NeRF
            recipe — coarse static 3D-GS for 3000 iterations, then 20k deforming iterations; HexPlane 32
            channels, resolution (64, 64, 64, 25), multires (1, 2); MLP width 64. GenXD reports about 4 minutes
            for the whole pipeline on a GPU, so shorter fine stages (``fit_dynamic_scene(iterations=...)``) are
            the usual choice.
    tiny:   tests and CI: 32-px clips, a 512-slot capacity, 150 coarse + 300 fine iterations, a small HexPlane
            (16 channels, resolution (16, 16, 16, 16)), heads zero-initialised, deformation / plane learning
            rates × 30 to make up for the short run.

Learning rates of the fine stage: the Gaussians as the 3D fit (:mod:`genxd_jax.lift.optim`, the position rate
restarting its decay, as the reference re-runs ``training_setup`` per stage); the MLP 1.6e-4 → 1.6e-6 and the
planes 1.6e-3 → 1.6e-5, both × the scene extent (the reference multiplies init *and* final rates by
``spatial_lr_scale``), decayed exponentially over the fine stage.
"""

from __future__ import annotations

import ml_collections

from genxd_jax.lift.fit_config import get_config as get_3d_config

VARIANTS = ("object", "tiny")


def get_config(variant: str = "object") -> ml_collections.ConfigDict:
    """The 4D fitting config; ``variant`` is one of ``VARIANTS``."""
    if variant not in VARIANTS:
        raise ValueError(f"lift4d config variant must be one of {VARIANTS}, got {variant!r}")
    tiny = variant == "tiny"
    c = ml_collections.ConfigDict()
    c.variant = variant
    c.iterations = 300 if tiny else 20_000  # fine (deforming) stage
    c.coarse_iterations = 150 if tiny else 3_000  # static 3D-GS stage (reference coarse_iterations)
    c.seed = 0
    c.check_every = 25  # host sync period of the fine stage (progress bar, loss history, non-finite check)

    # The coarse stage is a plain 3D fit (genxd_jax.lift.fit_scene) with this config; the fine stage reuses
    # its capacity, background, SH schedule, render settings and Gaussian learning rates.
    c.coarse = get_3d_config("tiny" if tiny else "single_view")
    c.coarse.iterations = c.coarse_iterations
    c.coarse.init.method = "random"  # monocular clip of a moving scene: no triangulation, no point cloud
    if tiny:
        c.coarse.capacity = 512
        c.coarse.init.num_random = 192
        c.coarse.densify.start, c.coarse.densify.stop, c.coarse.densify.every = 50, 120, 25
    else:
        c.coarse.capacity = 100_000
        c.coarse.init.num_random = 2_000
        c.coarse.densify.stop = 3_000

    c.hexplane = ml_collections.ConfigDict()
    c.hexplane.channels = 16 if tiny else 32
    # (the reference reads the time axis on its upper half only, see hexplane.py: 16 rows give ~8 for t ∈ [0, 1])
    c.hexplane.resolution = (16, 16, 16, 16) if tiny else (64, 64, 64, 25)
    c.hexplane.multires = (1, 2)
    # The box the spatial axes are normalised by: the active canonical means after the coarse stage, widened by
    # this fraction of its size on each side (points outside are clamped to the border texels).
    c.hexplane.aabb_margin = 0.1

    c.deform = ml_collections.ConfigDict()
    c.deform.width = 64
    # False: the reference Xavier init (the deformation starts non-zero); True: the heads' last layers start
    # at zero, so the fine stage starts exactly from the coarse scene.
    c.deform.zero_init_heads = tiny

    c.optim = ml_collections.ConfigDict()
    c.optim.deformation_lr_init = 1.6e-4  # × extent
    c.optim.deformation_lr_final = 1.6e-6  # × extent
    c.optim.grid_lr_init = 1.6e-3  # × extent
    c.optim.grid_lr_final = 1.6e-5  # × extent
    c.optim.lr_max_steps = 0  # 0: decay over the fine stage's iterations
    if tiny:
        # 300 fine iterations instead of 20k: the deformation and plane rates × 30 (measured on the procedural
        # clip of genxd_jax.lift.toy4d: × 1 barely moves the field in 300 steps, × 100 diverged)
        for name in ("deformation_lr_init", "deformation_lr_final", "grid_lr_init", "grid_lr_final"):
            c.optim[name] *= 30.0

    c.loss = ml_collections.ConfigDict()
    c.loss.lambda_dssim = 0.0  # the reference fine stage is L1 only; > 0 adds λ·(1 − SSIM) as in 3D-GS
    c.loss.plane_tv_weight = 1e-4
    c.loss.time_smoothness_weight = 1e-2
    c.loss.time_l1_weight = 1e-4
    return c


__all__ = ["VARIANTS", "get_config"]
