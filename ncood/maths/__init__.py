"""The mathematics of features: train-split moments, logit summaries, Neural Collapse metrics.

Pure functions of a features dump (``stats``: class means, covariances, eigen-decompositions
shared by the scorers; ``collapse``: NC1–NC5), streamed in blocks so that a dump larger than
memory works. It may import :mod:`ncood.store` (to read the dump) and :mod:`ncood.errors`.
"""
