"""Stage 2: 3D + 4D data, single-view conditioning only (paper §5.1). ``--config=configs/stage2.py:tiny``."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import base  # noqa: E402


def get_config(variant: str = "full"):
    c = base.get_config(variant)
    c.stage = 2
    c.init.source = "random" if variant == "tiny" else "workdir:runs/stage1"
    c.data.sources = base.stage_sources(variant, with_4d=True)
    c.data.single_view_ratio = 1.0
    c.data.square_mode = "crop"
    c.data.pad_probability = 0.0
    return c
