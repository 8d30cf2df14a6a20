"""``ncood.ood_statistics`` is now :mod:`ncood.ood.statistics`: one module, two names."""

import sys

from ncood.ood import statistics as ood_statistics

sys.modules[__name__] = ood_statistics
