"""TFDS builder package for co3d (see co3d_dataset_builder.py)."""
