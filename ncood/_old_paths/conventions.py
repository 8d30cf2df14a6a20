"""``ncood.conventions`` is now :mod:`ncood.ood.conventions`: one module, two names."""

import sys

from ncood.ood import conventions

sys.modules[__name__] = conventions
