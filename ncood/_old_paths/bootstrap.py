"""``ncood.bootstrap`` is now :mod:`ncood.ood.bootstrap`: one module, two names."""

import sys

from ncood.ood import bootstrap

sys.modules[__name__] = bootstrap
