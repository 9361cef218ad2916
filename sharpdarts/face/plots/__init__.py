"""Pictures of NAS results: genotype graphs, learning-rate curves, learning curves, alphas.

One module per kind of picture; this package re-exports their public names (and
``sharpdarts.plots`` is this package), so callers write ``plots.plot_genotype(...)``:

- :mod:`.cells`: ``plot_genotype`` (DARTS-style cell graphs drawn by graphviz) and
  ``genotype_for`` (a registry name or run folder -> ``Genotype``);
- :mod:`.curves`: ``plot_lr`` (cosine power annealing against cosine annealing and
  exponential decay) and ``plot_curves`` (accuracy, loss and learning rate per epoch of runs,
  seeds of one experiment as a mean ± std band);
- :mod:`.alphas`: ``plot_alphas`` (a search run's architecture weights as heatmaps);
- :mod:`.grid`: ``plot_grid`` (a multi-channel search's grid and chosen path);
- :mod:`.progress`: ``plot_progress`` (a search's most likely cells per epoch, an animated GIF);
- :mod:`.common`: output formats, saving figures, running ``dot``.

Every ``plot_*`` function writes one file (or one per cell) whose extension picks the format
(``.svg``, ``.pdf`` or ``.png``; ``plot_progress`` writes ``.gif``) and returns its path;
anything else is a ``UserError``, raised before anything is written. Figures are built on
``matplotlib.figure.Figure`` objects directly (no pyplot, no global backend state), so
plotting is safe in headless processes and threads. Run folders are read through
:mod:`sharpdarts.store.reader` only; functions take run folder *paths*, and resolving run ids
is the caller's job.

The names load lazily (PEP 562): the learning-rate curves import torch (through the
schedules), and a command that draws cells only should not pay for it.
"""
from __future__ import annotations

import importlib

# Each public name and the module of this package that defines it.
_EXPORTS = {
    "alphas": ("alphas_primitives", "edge_labels", "make_alphas_figure", "plot_alphas"),
    "cells": ("genotype_for", "genotype_graph", "plot_genotype"),
    "common": ("CELLS", "FORMATS"),
    "curves": ("COSINE_LABEL", "CURVE_PANELS", "EXPONENTIAL_LABEL", "cpa_label", "lr_curves",
               "make_curves_figure", "make_lr_figure", "plot_curves", "plot_lr"),
    "grid": ("grid_weights_for", "plot_grid"),
    "progress": ("plot_progress",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
