"""Experiment-only architectures (:mod:`.archs`) and recipe presets (:mod:`.recipes`).

Everything here was tried and lost to what :mod:`normlab.models` and :mod:`normlab.recipes` ship (the
evidence is in docs/architectures.md and docs/recipes.md). It stays registered so that the committed runs
trained with it still load, re-evaluate and report, and so that the comparisons can be rerun. It is not
part of the public surface: the CLI's help lists only the public names, but accepts these.
"""
