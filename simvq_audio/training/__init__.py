"""Training: config, schedule, EMA, non-finite guard, checkpoints, logging, validation, the loop.

Import the submodules directly (``simvq_audio.training.trainer``); this package
imports nothing heavy on its own.
"""
