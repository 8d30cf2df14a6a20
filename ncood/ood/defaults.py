"""The statistics' defaults, declared once and importable without numpy (the CLI's option
declarations read them when ``ncood --help`` starts)."""

DEFAULT_RESAMPLES = 1000  # bootstrap resamples of each interval
DEFAULT_FRACTION = 0.1  # share of each class of ID train held out for --tune
DEFAULT_SEED = 0  # seed of that held-out split
