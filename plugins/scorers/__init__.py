"""OOD scorers: each module implements only ``register_scorers``."""
