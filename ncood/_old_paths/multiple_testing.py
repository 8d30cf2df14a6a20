"""``ncood.multiple_testing`` is now :mod:`ncood.ood.multiple_testing`: one module, two names."""

import sys

from ncood.ood import multiple_testing

sys.modules[__name__] = multiple_testing
