"""The plugin host: the hooks, how plugins load, and what they register.

``hookspecs`` is the contract a plugin implements, ``loading`` finds and imports the built-ins
and the entry points (``host()``), ``scoring`` says what a scorer or an analysis is and how
``--set`` reaches it, ``entries`` what a dataset or a preset is, ``registry`` the one registry
type every hook fills (``models``: with families). It may import
:mod:`ncood.store` and :mod:`ncood.errors`, never a plugin nor a layer that uses plugins.
"""
