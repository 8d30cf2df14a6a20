"""``ncood.atomic`` is now :mod:`ncood.store.atomic`: one module, two names."""

import sys

from ncood.store import atomic

sys.modules[__name__] = atomic
