"""TFDS builder: re10k scenes packed into ArrayRecord shards for the genxd_jax grain pipeline.

RealEstate10K: 3D indoor scenes, <split>/<sequence>.txt camera files with the frames extracted to the sibling
<sequence>/<timestamp>.jpg. Manual dir: the folder holding the .txt files.

Build with `python data/prepare.py --dataset re10k --manual_dir RAW --data_dir OUT`; train on it with a
`config.data.sources` entry of format "tfds" and path `OUT/re10k/1.0.0`.
"""

from genxd_jax.data.packing import make_scene_builder_class


class Builder(make_scene_builder_class()):
    """re10k scenes in their published layout → one record per scene (JPEG frames + cameras)."""

    FORMAT = "re10k"
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
