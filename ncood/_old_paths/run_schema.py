"""``ncood.run_schema`` is now :mod:`ncood.store.run_schema`: one module, two names."""

import sys

from ncood.store import run_schema

sys.modules[__name__] = run_schema
