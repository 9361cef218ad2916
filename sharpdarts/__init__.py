"""sharpdarts: sharpDARTS and DARTS as a configuration-driven experiment registry.

Layers (imports run one way: ``tests/test_layers.py`` holds it):

- ``sharpdarts.core``: genotypes, schedules, optimizers, metrics, validation, atomic I/O;
- ``sharpdarts.nn``: model components (ops, cells, networks, weightings, the grid), over core;
- ``sharpdarts.engine``: search and training jobs, the architect, data, over nn and core;
- ``sharpdarts.store``: run folders, the results store, tables, over core;
- ``sharpdarts.face``: the command line, sweeps and plots, over all of them.

``registry``, ``resources`` and ``errors`` serve every layer. Each public name is imported
from the module that defines it (``docs/api.md`` lists the public API's paths).
"""

__version__ = "0.1.0"
