#!/usr/bin/env bash
# Reproduces every figure of benchmarks/README.md (about 65 minutes on a 2-core CPU).
# Usage: benchmarks/reproduce.sh [OUT_DIR]   (JSON lines and logs go to OUT_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-benchmarks/results}
mkdir -p "$OUT"
T=${THREADS:-1}
run() { echo "\$ $*"; "$@"; }
# Targets: ratios fast / reference, interleaved pairs in one process.
run $PY benchmarks/search_step.py --primitives DARTS_PRIMITIVES --order 1 --batch 16 --C 16 --layers 8 \
    --compare --flops --steps 5 --threads $T --json "$OUT/targets.jsonl"
run $PY benchmarks/search_step.py --primitives PRIMITIVES --order 2 --batch 16 --C 16 --layers 8 \
    --compare --flops --steps 3 --threads $T --json "$OUT/targets.jsonl"
run $PY benchmarks/train_step.py --batch 16 --compare --flops --steps 5 --threads $T --json "$OUT/targets.jsonl"
run $PY benchmarks/search_step.py --primitives DARTS_PRIMITIVES --order 1 --batch 16 \
    --partial_channels 4 --edge_normalization --compare --steps 3 --threads $T --json "$OUT/targets.jsonl"
run $PY benchmarks/search_step.py --primitives PRIMITIVES --order 1 --batch 16 \
    --partial_channels 4 --edge_normalization --compare --steps 3 --threads $T --json "$OUT/targets.jsonl"
# The recurrent search step (search model 300 units, PTB's vocabulary, batch 64, bptt 35).
run $PY benchmarks/lm_search_step.py --order 1 --compare --steps 5 --threads $T --json "$OUT/targets.jsonl"
run $PY benchmarks/lm_search_step.py --order 2 --compare --steps 3 --threads $T --json "$OUT/targets.jsonl"
# The same with the search cell's time step compiled (inductor; the first step compiles).
run $PY benchmarks/lm_search_step.py --order 1 --compare --steps 5 --threads $T --compile --no-memory \
    --json "$OUT/targets.jsonl"
run $PY benchmarks/lm_search_step.py --order 2 --compare --steps 3 --threads $T --compile --no-memory \
    --json "$OUT/targets.jsonl"
# The collapse measurement's eigenvalue against an estimated search epoch (~20 minutes).
run $PY benchmarks/collapse_cost.py --batch 16 --C 16 --layers 8 --steps 3 --repeats 2 --threads $T \
    --json "$OUT/targets.jsonl"
# NAS-Bench-201's supernet beside the authors' (needs `pip install xautodl`; else ours only).
run $PY benchmarks/nb201_step.py --batch 64 --rounds 5 --threads $T --json "$OUT/nb201_step.json"
# The DARTS supernet beside xautodl's NASNetworkDARTS (needs xautodl; else ours only).
run $PY benchmarks/peer_darts_step.py --batch 32 --rounds 5 --threads $T --channels-last-both \
    --json "$OUT/peer_darts_step.json"
# The DARTS family: GDAS's step time and PC-DARTS's memory against the fast DARTS supernet,
# and channels-last against NCHW on the fast path.
run $PY benchmarks/search_step.py --relaxation gumbel_hard --tau 10 --baseline darts --compare \
    --steps 5 --threads $T --json "$OUT/targets.jsonl"
run $PY benchmarks/search_step.py --partial_channels 4 --edge_normalization --baseline darts \
    --compare --steps 3 --threads $T --json "$OUT/targets.jsonl"
run $PY benchmarks/search_step.py --baseline nchw --compare --steps 5 --threads $T --no-memory \
    --json "$OUT/targets.jsonl"
run $PY benchmarks/train_step.py --baseline nchw --compare --steps 5 --threads $T --no-memory \
    --json "$OUT/targets.jsonl"
run $PY benchmarks/search_step.py --partial_channels 4 --edge_normalization --baseline nchw \
    --compare --steps 3 --threads $T --no-memory --json "$OUT/targets.jsonl"
[ "${SKIP_SWEEP:-0}" = 1 ] && exit 0
# The sweep: fast path, first order, step time and peak memory vs batch and primitive count.
run $PY benchmarks/table.py --threads $T
