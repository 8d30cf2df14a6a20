"""``ncood.chunked`` is now :mod:`ncood.store.chunked`: one module, two names."""

import sys

from ncood.store import chunked

sys.modules[__name__] = chunked
