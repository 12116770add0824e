"""TFDS builder: co3d scenes packed into ArrayRecord shards for the genxd_jax grain pipeline.

CO3Dv2: 3D object videos, <category>/frame_annotations.jgz + <category>/<sequence>/images/. Manual dir: the
CO3Dv2 root with the category folders.

Build with `python data/prepare.py --dataset co3d --manual_dir RAW --data_dir OUT`; train on it with a
`config.data.sources` entry of format "tfds" and path `OUT/co3d/1.0.0`.
"""

from genxd_jax.data.packing import make_scene_builder_class


class Builder(make_scene_builder_class()):
    """co3d scenes in their published layout → one record per scene (JPEG frames + cameras)."""

    FORMAT = "co3d"
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
