"""``ncood.registry`` is now :mod:`ncood.host.registry`: one module, two names."""

import sys

from ncood.host import registry

sys.modules[__name__] = registry
