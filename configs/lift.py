"""Fitting 3D Gaussians to posed views (`genxd_jax.lift.fit_scene`): the ml_collections config.

The definition lives in :mod:`genxd_jax.lift.fit_config` (so the installed package has its defaults); this file
exposes it to ``--config=configs/lift.py:<variant>`` flags. Variants: ``reference`` (INRIA 30k), ``few_view``
(GenXD Table 4, 10k iterations), ``single_view`` (GenXD Table 6, 2k iterations), ``tiny`` (tests).
"""

from genxd_jax.lift.fit_config import VARIANTS, get_config

__all__ = ["VARIANTS", "get_config"]
