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
- :mod:`.common`: output formats, saving figures, running ``dot``.

Every ``plot_*`` function writes one file (or one per cell) whose extension picks the format
(``.svg``, ``.pdf`` or ``.png``) and returns its path; anything else is a ``UserError``,
raised before anything is written. Figures are built on ``matplotlib.figure.Figure`` objects
directly (no pyplot, no global backend state), so plotting is safe in headless processes and
threads. Run folders are read through :mod:`sharpdarts.store.reader` only; functions take run
folder *paths*, and resolving run ids is the caller's job.
"""
from sharpdarts.face.plots.alphas import (alphas_primitives, edge_labels, make_alphas_figure,
                                          plot_alphas)
from sharpdarts.face.plots.cells import genotype_for, genotype_graph, plot_genotype
from sharpdarts.face.plots.common import CELLS, FORMATS
from sharpdarts.face.plots.curves import (COSINE_LABEL, CURVE_PANELS, EXPONENTIAL_LABEL,
                                          cpa_label, lr_curves, make_curves_figure,
                                          make_lr_figure, plot_curves, plot_lr)
from sharpdarts.face.plots.grid import grid_weights_for, plot_grid

__all__ = [
    "CELLS",
    "COSINE_LABEL",
    "CURVE_PANELS",
    "EXPONENTIAL_LABEL",
    "FORMATS",
    "alphas_primitives",
    "cpa_label",
    "edge_labels",
    "genotype_for",
    "genotype_graph",
    "grid_weights_for",
    "lr_curves",
    "make_alphas_figure",
    "make_curves_figure",
    "make_lr_figure",
    "plot_alphas",
    "plot_curves",
    "plot_genotype",
    "plot_grid",
    "plot_lr",
]
