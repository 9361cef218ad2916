"""The search and training engine: jobs built before their first epoch and fitted by one
epoch loop.

Modules: :mod:`.context` (device, precision, processes, random states), :mod:`.checkpoint`
(save, load, resume), :mod:`.loop` (the epoch loop and evaluation), :mod:`.jobs` (the jobs
and their gin configurables), :mod:`.architect` (architecture steps), :mod:`.data`, and the
language-model and random-search jobs. Import each name from its module.
"""
