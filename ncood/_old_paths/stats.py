"""``ncood.stats`` is now :mod:`ncood.maths.stats`: one module, two names."""

import sys

from ncood.maths import stats

sys.modules[__name__] = stats
