"""TFDS builder package for mvimgnet (see mvimgnet_dataset_builder.py)."""
