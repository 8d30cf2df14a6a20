"""ncood's built-in plugins, registered at start-up from ``DEFAULT_PLUGINS``
(ncood/host/loading.py) through the same hooks as a third-party package's."""
