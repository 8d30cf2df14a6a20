"""Architectures by name and foreign weights: what ``ncood extract`` builds and loads.

``registry`` names builders (timm's ``register``/``list``/``create``), ``weights`` reads a
checkpoint without running its code, ``capture`` finds the penultimate features of any model.
"""
