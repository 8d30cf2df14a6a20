"""The report stage: figures and tables from analyzed runs, rendered through Jinja2 into LaTeX.

It reads runs and results.json through :mod:`ncood.store`, the sections from :mod:`ncood.host`
and the metric conventions from :mod:`ncood.ood`; it may also import ``ncood`` (the version)
and :mod:`ncood.errors`, never the analysis driver that wrote the results.
"""
