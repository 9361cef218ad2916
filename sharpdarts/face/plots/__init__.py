"""Pictures of NAS results: genotype graphs, learning-rate curves, learning curves, alphas.

One module per kind of picture (import each name from its module):

- :mod:`.cells`: ``plot_genotype`` (DARTS-style cell graphs drawn by graphviz) and
  ``genotype_for`` (a registry name or run folder -> ``Genotype``);
- :mod:`.curves`: ``plot_lr`` (cosine power annealing against cosine annealing and
  exponential decay) and ``plot_curves`` (accuracy, loss and learning rate per epoch of runs,
  seeds of one experiment as a mean ± std band);
- :mod:`.collapse`: ``plot_collapse`` (searches' Hessian eigenvalue, skip connections and op
  entropy per epoch, overlaid);
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

The learning-rate curves import torch (through the schedules): a command that draws cells
only imports :mod:`.cells`, and does not pay for it.
"""
