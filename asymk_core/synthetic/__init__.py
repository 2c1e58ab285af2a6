"""Procedural talking-avatar corpus with exact ground truth.

``speech`` (speech-like audio + phonetic track + mouth articulation), ``avatar`` (numpy renderer),
``corpus`` (samples in memory, train/held-out splits, the on-disk corpus writer), ``command``
(the ``synth`` CLI subcommand).
"""
