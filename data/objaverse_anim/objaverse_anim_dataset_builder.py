"""TFDS builder: objaverse_anim scenes packed into ArrayRecord shards for the genxd_jax grain pipeline.

Animated Objaverse(-XL) renders (4D, Diffusion4D-style subset): Zero123-style frames in time order or
transforms.json with per-frame time. Manual dir: the folder of rendered objects.

Build with `python data/prepare.py --dataset objaverse_anim --manual_dir RAW --data_dir OUT`; train on it with
a `config.data.sources` entry of format "tfds" and path `OUT/objaverse_anim/1.0.0`.
"""

from genxd_jax.data.packing import make_scene_builder_class


class Builder(make_scene_builder_class()):
    """objaverse_anim scenes in their published layout → one record per scene (JPEG frames + cameras)."""

    FORMAT = "objaverse_anim"
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
