"""TFDS builder: camvid30k scenes packed into ArrayRecord shards for the genxd_jax grain pipeline.

CamVid-30K (paper §3): 4D clips, images/*.jpg + COLMAP 0/*.bin. Manual dir: the unzipped camvid-vipseg /
camvid-openvid batches (https://huggingface.co/datasets/Yuyang-z/CamVid-30K).

Build with `python data/prepare.py --dataset camvid30k --manual_dir RAW --data_dir OUT`; train on it with a
`config.data.sources` entry of format "tfds" and path `OUT/camvid30k/1.0.0`.
"""

from genxd_jax.data.packing import make_scene_builder_class


class Builder(make_scene_builder_class()):
    """camvid30k scenes in their published layout → one record per scene (JPEG frames + cameras)."""

    FORMAT = "camvid30k"
    MANUAL_DOWNLOAD_INSTRUCTIONS = __doc__
