"""``ncood.outputs`` is now :mod:`ncood.store.outputs`: one module, two names."""

import sys

from ncood.store import outputs

sys.modules[__name__] = outputs
