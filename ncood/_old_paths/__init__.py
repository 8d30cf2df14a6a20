"""The import paths ncood had before its core was grouped by concern (issue 20), kept working.

``ncood.features`` and its 28 siblings moved into folders (``ncood.store.features`` …); each
module here makes an old name the very module at its new place (``sys.modules`` entry
replaced), so ``from ncood.stats import train_moments`` and a ``monkeypatch`` of
``ncood.features`` keep working. ``ncood/__init__.py`` adds this folder to ``ncood.__path__``;
nothing is imported before an old name is. New code imports the new paths (tests/test_layering.py).
"""
