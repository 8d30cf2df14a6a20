"""``ncood.tuning`` is now :mod:`ncood.ood.tuning`: one module, two names."""

import sys

from ncood.ood import tuning

sys.modules[__name__] = tuning
