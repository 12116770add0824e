"""Fitting dynamic 4D Gaussians (`genxd_jax.lift.fit_dynamic_scene`): the ml_collections config.

The definition lives in :mod:`genxd_jax.lift.fit4d_config`; this file exposes it to
``--config=configs/lift4d.py:<variant>`` flags. Variants: ``object`` (GenXD Table 3's 4D-object setting with the
4DGaussians D-NeRF recipe), ``tiny`` (tests).
"""

from genxd_jax.lift.fit4d_config import VARIANTS, get_config

__all__ = ["VARIANTS", "get_config"]
