"""Until the CLI's train command moves (layout-m1), its ``--dry-run`` imports ``check_names``
from here; the datasets live in :mod:`ncood.datasets`. Remove once nothing imports this."""

from ncood.datasets import check_names

__all__ = ["check_names"]
