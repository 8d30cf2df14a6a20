"""``ncood.result_merge`` is now :mod:`ncood.store.result_merge`: one module, two names."""

import sys

from ncood.store import result_merge

sys.modules[__name__] = result_merge
