"""TFDS builder package for acid (see acid_dataset_builder.py)."""
