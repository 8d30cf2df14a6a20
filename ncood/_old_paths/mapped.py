"""``ncood.mapped`` is now :mod:`ncood.store.mapped`: one module, two names."""

import sys

from ncood.store import mapped

sys.modules[__name__] = mapped
