"""Datasets, augmentation, loaders and anchors."""
