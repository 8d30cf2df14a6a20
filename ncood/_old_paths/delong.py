"""``ncood.delong`` is now :mod:`ncood.ood.delong`: one module, two names."""

import sys

from ncood.ood import delong

sys.modules[__name__] = delong
