"""``ncood.tensor_header`` is now :mod:`ncood.store.tensor_header`: one module, two names."""

import sys

from ncood.store import tensor_header

sys.modules[__name__] = tensor_header
