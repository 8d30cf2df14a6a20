"""``ncood.ood_groups`` is now :mod:`ncood.ood.groups`: one module, two names."""

import sys

from ncood.ood import groups as ood_groups

sys.modules[__name__] = ood_groups
