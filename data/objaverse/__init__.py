"""TFDS builder package for objaverse (see objaverse_dataset_builder.py)."""
