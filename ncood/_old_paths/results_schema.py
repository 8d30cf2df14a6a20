"""``ncood.results_schema`` is now :mod:`ncood.store.results_schema`: one module, two names."""

import sys

from ncood.store import results_schema

sys.modules[__name__] = results_schema
