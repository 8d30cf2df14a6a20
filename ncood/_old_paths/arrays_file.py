"""``ncood.arrays_file`` is now :mod:`ncood.store.arrays_file`: one module, two names."""

import sys

from ncood.store import arrays_file

sys.modules[__name__] = arrays_file
