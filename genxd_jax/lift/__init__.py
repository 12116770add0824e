"""Lifting views to 3D: Gaussian splatting in pure JAX (fixed-capacity Gaussians, tiled rasteriser, .ply I/O).

Conventions: OpenCV camera-to-world (4, 4) poses, intrinsics (3, 3) normalised by the image width/height,
pixel (column i, row j) sampled at (i + ½, j + ½); projection, SH colours and compositing as the reference
3D-GS rasteriser (graphdeco-inria diff-gaussian-rasterization). The dense oracle rasteriser and the
``RenderOutput`` type live in :mod:`genxd_jax.lift.render`.
"""

from genxd_jax.lift.gaussians import Gaussians
from genxd_jax.lift.ply import load_ply, save_ply
from genxd_jax.lift.render import render

__all__ = ["Gaussians", "load_ply", "render", "save_ply"]
from genxd_jax.lift.fit import fit_scene  # noqa: E402  (fitting: fit.py, optim.py, losses.py, densify.py)

__all__ += ["fit_scene"]
from genxd_jax.lift.planning import generate_single_view, generate_views, group_targets, single_view_plan  # noqa: E402

__all__ += ["generate_single_view", "generate_views", "group_targets", "single_view_plan"]  # view planning
from genxd_jax.lift.fit4d import fit_dynamic_scene, render_at  # noqa: E402  (4D: fit4d.py, hexplane.py, deform.py)

__all__ += ["fit_dynamic_scene", "render_at"]
