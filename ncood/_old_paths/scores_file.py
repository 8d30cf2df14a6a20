"""``ncood.scores_file`` is now :mod:`ncood.store.scores_file`: one module, two names."""

import sys

from ncood.store import scores_file

sys.modules[__name__] = scores_file
