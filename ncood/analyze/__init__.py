"""The analysis driver: what ``ncood analyze`` does to one run, epoch by epoch.

``driver`` fits each scorer on ID train, scores test and every OOD set, runs the analyses, adds
the OOD statistics and writes results.json; a failing plugin is recorded, never fatal.
``ncood.cli.analyze`` and :func:`ncood.evaluate` call it. It may import :mod:`ncood.ood`,
:mod:`ncood.maths`, :mod:`ncood.host`, :mod:`ncood.store` and :mod:`ncood.errors`.
"""
