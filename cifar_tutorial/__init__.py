"""Classifying CIFAR-10 with neural networks: the code behind the book.

Each module follows one part of the story, in the order of the chapters:

- :mod:`cifar_tutorial.runtime` -- seeds, determinism, devices, precision and the
  run modes (chapter 1 onwards),
- :mod:`cifar_tutorial.data` -- CIFAR-10 in memory and as ``tf.data`` pipelines
  (chapters 1 and 5),
- :mod:`cifar_tutorial.sources` -- reading it from an image folder or TensorFlow
  Datasets (chapter 5),
- :mod:`cifar_tutorial.plots` -- the figures of the book (every chapter),
- :mod:`cifar_tutorial.maths` -- NumPy reference versions of softmax, norms and
  cross-entropy (chapters 2 and 3),
- :mod:`cifar_tutorial.learning` -- softmax regression, a two-layer network and the
  momentum and Adam steps in NumPy, checked against Keras (chapter 4),
- :mod:`cifar_tutorial.models` -- the seed's CNN, its output heads and stronger nets
  (chapters 3, 7 and 9),
- :mod:`cifar_tutorial.convolution` -- convolution, pooling and receptive fields in
  NumPy, checked against Keras' layers (chapter 6),
- :mod:`cifar_tutorial.train` -- ``fit`` and a ``tf.GradientTape`` loop with
  checkpoints, resume and NaN guards (chapters 7 and 8),
- :mod:`cifar_tutorial.checkpoints` -- a run's per-epoch checkpoint, and the
  fall-back past a damaged one (chapters 7 and 8),
- :mod:`cifar_tutorial.records` -- a run's history, the files written atomically
  and the lock that keeps one run per folder (chapter 7),
- :mod:`cifar_tutorial.evaluate` -- accuracy, per-class accuracy, confusion matrix,
  worst mistakes and test-time augmentation (chapters 7 and 9),
- :mod:`cifar_tutorial.predict` -- your own image files classified by a saved model
  (chapter 7),
- :mod:`cifar_tutorial.steps` -- the training step written with ``tf.GradientTape``
  (chapter 8),
- :mod:`cifar_tutorial.experiments` -- timed training runs, comparison tables, a
  grid search (chapter 9) and one device against several replicas (chapter 10),
- :mod:`cifar_tutorial.recipes` and :mod:`cifar_tutorial.fastnet` -- the fast
  recipe of chapter 9 and its network,
- :mod:`cifar_tutorial.distribute` -- ``tf.distribute`` strategies and clusters
  (chapter 10),
- :mod:`cifar_tutorial.calibration`, :mod:`cifar_tutorial.corruptions`,
  :mod:`cifar_tutorial.saliency` and :mod:`cifar_tutorial.export` -- calibration,
  common corruptions, saliency maps and exported models: can we trust the
  classifier? (chapter 11), with :mod:`cifar_tutorial.trust_plots`, that
  chapter's figures,
- :mod:`cifar_tutorial.cli` -- ``python -m cifar_tutorial train|evaluate|predict``,
- :mod:`cifar_tutorial.errors` -- the errors a user can fix, which the command line
  reports in one line (every module).

Imports go one way: the command line uses the recipes, training and evaluation,
which use the data, models, maths and runtime; :mod:`cifar_tutorial.errors`
imports nothing from the package.
"""

from __future__ import annotations

import os

# TensorFlow's C++ start-up notices (oneDNN, CUDA probing) go straight to the
# process's stderr; keep them out of notebooks unless the user asked for them.
# Level 2 hides INFO and WARNING lines; ERROR lines (a CUDA or cuDNN library that
# fails to load) still show, as 3 would not.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "1.0.0"

__all__ = ["__version__"]
