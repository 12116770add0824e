"""TFDS builder: objaverse scenes packed into ArrayRecord shards for the genxd_jax grain pipeline.

Objaverse renders (Zero123-style NNN.png/NNN.npy or NeRF transforms.json per object). Manual dir: the folder
of rendered objects.

Build with `python data/prepare.py --dataset objaverse --manual_dir RAW --data_dir OUT`; train on it with a
`config.data.sources` entry of format "tfds" and path `OUT/objaverse/1.0.0`.
"""

from genxd_jax.data.packing import make_scene_builder_class


class Builder(make_scene_builder_class()):
    """objaverse scenes in their published layout → one record per scene (JPEG frames + cameras)."""

    FORMAT = "objaverse"
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
