"""Extraction of a model trained anywhere into an ordinary ncood run (``ncood extract``).

``inputs`` turns datasets, loaders or tensors into batches, ``stream`` writes one features file
from a model and its head, ``imported`` writes the run (one features file per checkpoint and a
manifest with ``source: imported``), ``sharding`` deals each split's batches to the processes
of ``torchrun``, ``api`` is ``ncood.extract`` for notebooks. It may import
:mod:`ncood.engine`, :mod:`ncood.models`, :mod:`ncood.datasets`, :mod:`ncood.store`,
:mod:`ncood.host`, :mod:`ncood.progress` and :mod:`ncood.errors`.
"""
