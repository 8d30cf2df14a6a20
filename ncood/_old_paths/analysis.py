"""``ncood.analysis`` is now :mod:`ncood.analyze.driver`: one module, two names."""

import sys

from ncood.analyze import driver as analysis

sys.modules[__name__] = analysis
