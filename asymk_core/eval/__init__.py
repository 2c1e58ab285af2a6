"""Evaluation on the synthetic corpus: the probe model (mouth + identity), metrics (sync, identity
drift, boundary jump, visual quality), reports (JSON + PNG) and the ``eval`` CLI subcommand."""
