"""``ncood.hookspecs`` is now :mod:`ncood.host.hookspecs`: one module, two names."""

import sys

from ncood.host import hookspecs

sys.modules[__name__] = hookspecs
