"""``ncood.run_cleanup`` is now :mod:`ncood.store.run_cleanup`: one module, two names."""

import sys

from ncood.store import run_cleanup

sys.modules[__name__] = run_cleanup
