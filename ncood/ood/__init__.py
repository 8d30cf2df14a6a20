"""The statistics of OOD results: the metrics, their conventions, and how sure each one is.

``conventions`` (score orientation; AUROC, AUPR, FPR@95), ``bootstrap`` intervals, ``delong``
tests of AUROC differences, ``multiple_testing`` (Holm: which scorers cannot be told from the
best), ``groups`` (near/far OOD sets), ``statistics`` (all of these written into results.json)
and ``tuning`` (scorer parameters chosen on validation sets, never on the test sets). It may
import :mod:`ncood.host` (the scorer contract), :mod:`ncood.store` and :mod:`ncood.errors`.
"""
