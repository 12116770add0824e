"""TFDS builder package for camvid30k (see camvid30k_dataset_builder.py)."""
