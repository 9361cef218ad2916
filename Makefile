# sharpdarts: `make demo` and `make test` do all set-up (they create .venv on first use).
#   make test                                   the test suite
#   make demo                                   offline demo: search, promote, train it and a random cell, table
#   make demo-lm                                offline language-model demo (Python's own docs)
#   make demo-family                            offline: DARTS, GDAS and DrNAS searches, their table, the collapse plot
#   make cifar10-sharpsepconv-darts SEEDS="1 2 3"   one paper row, one run per seed
#   make cifar10-sharpsepconv-darts SEEDS=1-8 LAUNCHER=slurm   one Slurm job per seed (sweep)
#   make tables                                 every table (markdown) and figure into results/tables
#   make list                                   every experiment and its paper row
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SHARPDARTS := $(VENV)/bin/sharpdarts
STAMP := $(VENV)/.installed
# The torch / torchvision pair this project is tested with.
TORCH := torch==2.14.1 torchvision==0.29.1
# Three pytest workers on two cores: a worker waiting on a child process (a sweep's jobs,
# torchrun, Slurm) leaves its core to the other two, and both cores stay busy to the end.
PYTEST_ARGS ?= -n 3
RESULTS ?= results
SEEDS ?= 1
RUN_ARGS ?=

.PHONY: install test demo demo-lm demo-family tables list figures
install: $(STAMP)

$(STAMP): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# The linter and the formatter's check first (ruff.toml), then the suite.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest $(PYTEST_ARGS)

list: $(STAMP)
	@$(SHARPDARTS) list

# The demo's promoted genotype goes to its own registry file in the results store, so the
# repository's experiments/genotypes.json only ever holds genotypes you promote yourself.
DEMO_REGISTRY := $(RESULTS)/demo_genotypes.json
# The searched cell (DEMO) and a random cell of the same space (DEMO_RANDOM, seed 1) are each
# trained once per seed, on the same budget; side by side, as each run uses one thread.
DEMO_SEEDS ?= 1 2
demo: $(STAMP)
	@set -e; \
	search=$$($(SHARPDARTS) run demo/search --seed 1 --results $(RESULTS) | tail -n 1 | awk '{print $$NF}'); \
	echo "demo search run: $$search"; \
	SHARPDARTS_GENOTYPES=$(DEMO_REGISTRY) $(SHARPDARTS) genotype promote $$search DEMO --replace --results $(RESULTS); \
	SHARPDARTS_GENOTYPES=$(DEMO_REGISTRY) $(SHARPDARTS) genotype random DEMO_RANDOM --seed 1 --replace; \
	for seed in $(DEMO_SEEDS); do \
	  SHARPDARTS_GENOTYPES=$(DEMO_REGISTRY) $(SHARPDARTS) run demo/train --seed $$seed --results $(RESULTS) | tail -n 1 & one=$$!; \
	  SHARPDARTS_GENOTYPES=$(DEMO_REGISTRY) $(SHARPDARTS) run demo/train_random --seed $$seed --results $(RESULTS) | tail -n 1 & two=$$!; \
	  wait $$one; wait $$two; \
	done; \
	$(SHARPDARTS) table demo --results $(RESULTS); \
	echo; echo "run folders: $(RESULTS)/runs/demo/"

# The language-model demo: DARTS's recurrent search and training on the Python documentation
# text that CPython ships (written once under the data root: data/pydoc, or $$SHARPDARTS_DATA);
# its cell is promoted as DEMO_RNN into the same demo registry, and DARTS_V2's recurrent cell is
# trained on the same budget for comparison.
demo-lm: $(STAMP)
	@set -e; \
	search=$$($(SHARPDARTS) run demo/lm_search --seed 1 --results $(RESULTS) | tail -n 1 | awk '{print $$NF}'); \
	echo "language-model demo search run: $$search"; \
	SHARPDARTS_GENOTYPES=$(DEMO_REGISTRY) $(SHARPDARTS) genotype promote $$search DEMO_RNN --replace --results $(RESULTS); \
	SHARPDARTS_GENOTYPES=$(DEMO_REGISTRY) $(SHARPDARTS) run demo/lm_train --seed 1 --results $(RESULTS) | tail -n 1; \
	$(SHARPDARTS) run demo/lm_train_darts_v2 --seed 1 --results $(RESULTS) | tail -n 1; \
	$(SHARPDARTS) table demo_lm --results $(RESULTS); \
	echo; echo "run folders: $(RESULTS)/runs/demo/"

# The family demo: DARTS, GDAS and DrNAS searches on the digits (demo/family_*), side by side
# (one thread each), then their table and the collapse plot (eigenvalue, skip connections, op
# entropy per epoch) of the three runs. Each run's folder is the last word `run` prints.
FAMILY_DEMO := darts gdas drnas
demo-family: $(STAMP)
	@set -e; mkdir -p $(RESULTS); \
	for method in $(FAMILY_DEMO); do \
	  ($(SHARPDARTS) run demo/family_$$method --seed 1 --results $(RESULTS) | tail -n 1 | awk '{print $$NF}' > $(RESULTS)/.demo_family_$$method) & \
	done; wait; \
	runs=""; for method in $(FAMILY_DEMO); do \
	  run=$$(cat $(RESULTS)/.demo_family_$$method); rm -f $(RESULTS)/.demo_family_$$method; \
	  test -d "$$run" || { echo "demo/family_$$method failed (see above)"; exit 1; }; \
	  echo "demo/family_$$method run: $$run"; runs="$$runs $$run"; \
	done; \
	$(SHARPDARTS) table demo_family --results $(RESULTS); \
	$(SHARPDARTS) plot collapse $$runs --out $(RESULTS)/demo_family_collapse.svg; \
	echo; echo "run folders: $(RESULTS)/runs/demo/"

tables: $(STAMP)
	$(SHARPDARTS) tables --results $(RESULTS) --out $(RESULTS)/tables

figures: $(STAMP)
	$(PY) docs/make_figures.py

# One target per experiment: experiments/cifar10/sharpsepconv_darts.gin is
# `make cifar10-sharpsepconv-darts`; SEEDS runs it once per seed, RUN_ARGS adds options.
# LAUNCHER=slurm (or local) runs the seeds as a `sharpdarts sweep` instead: one scheduler job
# per seed; SWEEP_ARGS adds sweep options (e.g. SWEEP_ARGS="--partition gpu --time 2880").
LAUNCHER ?=
SWEEP_ARGS ?=
EXPERIMENTS := $(patsubst experiments/%.gin,%,$(sort $(wildcard experiments/*/*.gin)))
target_of = $(subst _,-,$(subst /,-,$(1)))
define experiment_rule
.PHONY: $(call target_of,$(1))
$(call target_of,$(1)): $(STAMP)
	@if [ -n "$$(LAUNCHER)" ]; then \
	  $(SHARPDARTS) sweep $(1) --seeds "$$(SEEDS)" --launcher $$(LAUNCHER) --results $$(RESULTS) $$(SWEEP_ARGS) $$(RUN_ARGS); \
	else \
	  for seed in $$(SEEDS); do $(SHARPDARTS) run $(1) --seed $$$$seed --results $$(RESULTS) $$(RUN_ARGS) || exit $$$$?; done; \
	fi
endef
$(foreach e,$(EXPERIMENTS),$(eval $(call experiment_rule,$(e))))
