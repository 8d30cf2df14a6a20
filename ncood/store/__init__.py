"""The run format and its files: what ncood writes to disk and reads back.

The run folder and its manifest (``run``, ``run_schema``, ``manifest`` builds it),
results.json (``results_schema``, ``result_merge``, ``plugin_output``), the features dump, its
one streamed writer and the blocks it is read in (``features``, ``features_writer``,
``streamed``, ``mapped``, ``chunked``, ``tensor_header``), the scores and arrays files, atomic
writes, integrity checks, what ``--force`` may delete, and output folders. Everything else
reads a run through here, so this folder may import only :mod:`ncood.errors`; docs/run-format.md
is its specification.
"""
