"""What the benchmark scripts share; each script keeps only what is particular to it.

* :mod:`harness.cli`: the shared command-line flags (``--data-root``, ``--episodes``, ...).
* :mod:`harness.output`: atomic JSON writing and the environment a result was measured in.
* :mod:`harness.episodes`: datasets, embedding episodes' items through a
  :class:`~anyshot.feature_cache.FeatureCache`, stacked episode tensors, and running head-scope
  methods on them through ``fit_features``.

:mod:`harness.cli` and :mod:`harness.output` need only the standard library and torch, so
``easyfsl_methods.py`` (run in a venv without anyshot) uses them too; this package imports
nothing itself. Scripts run as ``python benchmarks/<script>.py``, which puts ``benchmarks/`` on
the import path.
"""
