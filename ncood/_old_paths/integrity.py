"""``ncood.integrity`` is now :mod:`ncood.store.integrity`: one module, two names."""

import sys

from ncood.store import integrity

sys.modules[__name__] = integrity
