"""The plugin host: the hooks, how plugins load, and what they register.

``hookspecs`` is the contract a plugin implements, ``loading`` finds and imports the entry
points (``host()``), ``scoring`` says what a scorer or an analysis is and how ``--set`` reaches
it, ``registry`` and ``models`` hold what plugins register by name. It may import
:mod:`ncood.store` and :mod:`ncood.errors`, never a plugin nor a layer that uses plugins.
"""
