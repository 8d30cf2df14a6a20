"""Model architectures for ``ncood extract``: each module implements only ``register_models``."""
