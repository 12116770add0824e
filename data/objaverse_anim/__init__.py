"""TFDS builder package for objaverse_anim (see objaverse_anim_dataset_builder.py)."""
