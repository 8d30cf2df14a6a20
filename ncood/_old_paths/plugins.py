"""``ncood.plugins`` is now :mod:`ncood.host.loading`: one module, two names."""

import sys

from ncood.host import loading as plugins

sys.modules[__name__] = plugins
