"""Datasets by name (``--dataset``, ``--ood``): each module implements only ``register_datasets``;
what they share (types, conversions, published files) lives in ncood.datasets."""
