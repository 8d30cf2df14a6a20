"""Training presets (``ncood train --preset``): each module implements only
``register_presets``."""
