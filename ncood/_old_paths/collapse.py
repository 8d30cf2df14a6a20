"""``ncood.collapse`` is now :mod:`ncood.maths.collapse`: one module, two names."""

import sys

from ncood.maths import collapse

sys.modules[__name__] = collapse
