"""``ncood.features`` is now :mod:`ncood.store.features`: one module, two names."""

import sys

from ncood.store import features

sys.modules[__name__] = features
