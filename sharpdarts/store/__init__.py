"""The run store: run folders, the results store, and the tables built from it.

A run lives in ``RESULTS/runs/<experiment>/<run_id>/`` and holds:

- ``run.json``: what was run (experiment, seed, kind, command, config hash, record format),
  where and with what (git commit/branch/dirty, host, device, package versions), and how it
  went (status, reason, sessions, wall seconds, final metrics). Every write is atomic.
- ``config.gin`` (the config as asked) and ``operative_config.gin`` (written by the engine).
- ``git.diff`` when the working tree was dirty (``git.resume<N>.diff`` for a later session).
- ``metrics.jsonl``: one JSON object per epoch, appended and fsynced, never an epoch twice.
- ``checkpoint.pt``: written by the engine at ``Run.checkpoint_path``.

Modules, one job each:

- :mod:`~sharpdarts.store.reader`: THE reader of run folders (results, plots and the run
  itself read through it), and the mapping of old field names;
- :mod:`~sharpdarts.store.provenance`: git state and diff, device, packages, host, processes;
- :mod:`~sharpdarts.store.keys`: a run's key (config hash) and its folder id;
- :mod:`~sharpdarts.store.run`: :class:`Run`, one folder written by its process;
- :mod:`~sharpdarts.store.store`: finding runs, and ``start_run``'s skip/resume/new decision;
- :mod:`~sharpdarts.store.results`: every run folder -> one pandas DataFrame;
- :mod:`~sharpdarts.store.table_defs`: table definitions (tables.json) and the paper's values;
- :mod:`~sharpdarts.store.tables`: the tables built from the DataFrame, and their printing.

Import each name from its module. Apart from results and tables, these modules import neither
torch nor pandas: the quick commands use them.
"""
