"""``ncood.scoring`` is now :mod:`ncood.host.scoring`: one module, two names."""

import sys

from ncood.host import scoring

sys.modules[__name__] = scoring
