"""Core building blocks with no model code: genotypes, schedules, optimizers, metrics, I/O."""
