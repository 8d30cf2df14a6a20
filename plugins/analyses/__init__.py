"""Analyses of a features dump: each module implements only ``register_analyses``."""
