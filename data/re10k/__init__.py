"""TFDS builder package for re10k (see re10k_dataset_builder.py)."""
