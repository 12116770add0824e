"""Stage 3: all 3D + 4D data, single- and multi-view conditioning, crop or pad (paper §5.1).

``python -m genxd_jax.main --config=configs/stage3.py:tiny --workdir=/tmp/genxd_tiny``
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import base  # noqa: E402


def get_config(variant: str = "full"):
    c = base.get_config(variant)
    c.stage = 3
    c.init.source = "random" if variant == "tiny" else "workdir:runs/stage2"
    c.data.sources = base.stage_sources(variant, with_4d=True)
    c.data.single_view_ratio = 0.5  # GenXD main.yaml
    c.data.square_mode = "crop"
    c.data.pad_probability = 0.5  # "center crop or padding"
    return c
