"""The ``asymk-talker`` command line: the front ends above the pipeline.

``main`` (init, generate), ``demo``, ``eval`` (+ ``eval_real``), ``preprocess`` and ``bench``; each
subcommand module has ``register(subparsers)`` and calls library code only.
"""
