"""Stage 1: 3D data only, centre crop (paper §5.1). ``--config=configs/stage1.py:tiny`` or ``:full``."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import base  # noqa: E402


def get_config(variant: str = "full"):
    c = base.get_config(variant)
    c.stage = 1
    c.data.sources = base.stage_sources(variant, with_4d=False)
    c.data.single_view_ratio = 0.5
    c.data.square_mode = "crop"
    c.data.pad_probability = 0.0
    c.eval.kinds = ("3d",)
    return c
