"""TFDS builder: acid scenes packed into ArrayRecord shards for the genxd_jax grain pipeline.

ACID: 3D outdoor (aerial coastline) scenes in the RealEstate10K camera-file layout. Manual dir: the folder
holding the .txt files and frame folders.

Build with `python data/prepare.py --dataset acid --manual_dir RAW --data_dir OUT`; train on it with a
`config.data.sources` entry of format "tfds" and path `OUT/acid/1.0.0`.
"""

from genxd_jax.data.packing import make_scene_builder_class


class Builder(make_scene_builder_class()):
    """acid scenes in their published layout → one record per scene (JPEG frames + cameras)."""

    FORMAT = "acid"
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
