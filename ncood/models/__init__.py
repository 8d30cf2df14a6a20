"""Architectures by name and foreign weights: what ``ncood extract`` builds and loads.

``registry`` names builders (timm's ``register``/``list``/``create``), ``weights`` reads a
checkpoint without running its code, ``named_weights`` finds pretrained weights by name
(``torchvision:…``, ``timm:…``) in each library's cache with their preprocessing, ``capture``
finds the penultimate features of any model.
It may import :mod:`ncood.host` (which holds what plugins register) and :mod:`ncood.errors`.
"""
