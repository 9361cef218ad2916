"""sharpdarts: sharpDARTS and DARTS as a configuration-driven experiment registry.

Layers (imports run one way, from the face down):

- ``sharpdarts.nn``: model components (ops, cells, networks, weightings, the grid);
- ``sharpdarts.core``: genotypes, schedules, optimizers, metrics, atomic I/O;
- ``sharpdarts.engine``: search and training jobs, the architect, data;
- ``sharpdarts.store``: run folders, the results store, tables;
- ``sharpdarts.face``: the command line and plots.

The flat module paths the project started with (``sharpdarts.models``,
``sharpdarts.genotypes``, ...) stay importable: each is the very module object of its new
home (see ``_MOVED``), so attributes, monkeypatches and gin registrations are shared.
"""
import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

# Old flat path -> the module that now holds it.
_MOVED = {
    "sharpdarts.ops": "sharpdarts.nn.ops",
    "sharpdarts.fast": "sharpdarts.nn.fast",
    "sharpdarts.weighting": "sharpdarts.nn.weighting",
    "sharpdarts.cells": "sharpdarts.nn.cells",
    "sharpdarts.models": "sharpdarts.nn.models",
    "sharpdarts.multichannel": "sharpdarts.nn.multichannel",
    "sharpdarts.genotypes": "sharpdarts.core.genotypes",
    "sharpdarts.schedules": "sharpdarts.core.schedules",
    "sharpdarts.metrics": "sharpdarts.core.metrics",
    "sharpdarts.configurables": "sharpdarts.core.optimizers",
    "sharpdarts.architect": "sharpdarts.engine.architect",
    "sharpdarts.data": "sharpdarts.engine.data",
    # The run store is one package now (provenance, run, store, keys, reader); the two
    # paths its single module had are the package itself.
    "sharpdarts.runs": "sharpdarts.store",
    "sharpdarts.store.runs": "sharpdarts.store",
    "sharpdarts.results": "sharpdarts.store.results",
    "sharpdarts.plots": "sharpdarts.face.plots",
    "sharpdarts.cli": "sharpdarts.face.cli",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old flat path as the module at its new path (the same object)."""

    def __init__(self):
        self._real_specs = {}

    def find_spec(self, fullname, path=None, target=None):
        if fullname in _MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        module = importlib.import_module(_MOVED[spec.name])
        self._real_specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        """Nothing to run. The import system has just set the module's ``__spec__`` to the
        alias's; give it back its own, so the module still knows its real name and file."""
        module.__spec__ = self._real_specs.pop(module.__spec__.name)


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
