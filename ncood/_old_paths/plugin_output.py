"""``ncood.plugin_output`` is now :mod:`ncood.store.plugin_output`: one module, two names."""

import sys

from ncood.store import plugin_output

sys.modules[__name__] = plugin_output
