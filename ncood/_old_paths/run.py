"""``ncood.run`` is now :mod:`ncood.store.run`: one module, two names."""

import sys

from ncood.store import run

sys.modules[__name__] = run
