"""ncood's built-in plugins, loaded through the ``ncood`` entry-point group like any other."""
