"""TFDS builder: mvimgnet scenes packed into ArrayRecord shards for the genxd_jax grain pipeline.

MVImgNet: 3D object videos, <category>/<object>/images/*.jpg + sparse/0/*.bin. Manual dir: the extracted
MVImgNet archives.

Build with `python data/prepare.py --dataset mvimgnet --manual_dir RAW --data_dir OUT`; train on it with a
`config.data.sources` entry of format "tfds" and path `OUT/mvimgnet/1.0.0`.
"""

from genxd_jax.data.packing import make_scene_builder_class


class Builder(make_scene_builder_class()):
    """mvimgnet scenes in their published layout → one record per scene (JPEG frames + cameras)."""

    FORMAT = "mvimgnet"
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
