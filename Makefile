# siamtrack: `make demo` (environment, weights, a tracked sample clip) and `make test`.
# GPU users pick their torch build: make setup TORCH_SPEC="torch==2.13.0" (any pip spec).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Every pip call after the first keeps torch pinned, so no dependency swaps in another build.
CONSTRAINTS := $(VENV)/constraints.txt
PIP_INSTALL := PIP_CONSTRAINT=$(abspath $(CONSTRAINTS)) $(PIP) install --disable-pip-version-check -q
STAMP := $(VENV)/.installed

.PHONY: setup test lint demo weights bench bench-gpu train-lite train-nano clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	echo "$(TORCH_SPEC)" > $(CONSTRAINTS)
	$(PIP_INSTALL) "$(TORCH_SPEC)"
	$(PIP_INSTALL) -e ".[dev]"
	touch $@

setup: $(STAMP)

test: setup
	$(PY) -m pytest -q -ra

lint: setup
	$(VENV)/bin/ruff check siamtrack tests

weights: setup
	$(VENV)/bin/siamtrack weights list

demo: setup weights
	$(VENV)/bin/siamtrack demo

# Every figure is also a ratio to the fp32-reference step timed in the same run (--vs), comparable across machines.
# bf16 is timed where the CPU runs it natively (AVX512-BF16 or AMX); elsewhere it would be refused.
BENCH_BF16 := $(shell grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null && echo ,bf16)
# int8 (onnxruntime) is calibrated on training videos: timed where they are (../shared or $SIAMTRACK_CALIBRATION).
BENCH_INT8 := $(shell test -d "$${SIAMTRACK_CALIBRATION:-../shared/train_data/videos}" && echo ,int8)
BENCH_CASES := --backend torch,onnxruntime --precision fp32-reference,fp32$(BENCH_BF16)$(BENCH_INT8) --threads 1,2 --vs fp32-reference

bench: setup
	$(VENV)/bin/siamtrack bench $(BENCH_CASES) --json runs/bench.json
	$(VENV)/bin/siamtrack bench --arch siammask_sharp $(BENCH_CASES) --frames 25 --json runs/bench-official.json

# The CUDA figures of docs/eval.md ("Measuring on a GPU"): scripts/gpu_check.py, about 6 minutes on an H200,
# records in $OUT, else runs/gpu-check/. Runs with the venv's python where there is one, else python3 (a GPU machine's own
# torch); GPU_CHECK_ARGS=--dry-run checks the same steps on a CPU in about a minute.
GPU_PYTHON := $(if $(wildcard $(PY)),$(PY),$(PYTHON))
GPU_CHECK_ARGS ?=
bench-gpu:
	PYTHONPATH=$(CURDIR) $(GPU_PYTHON) scripts/gpu_check.py --out $${OUT:-runs/gpu-check} $(GPU_CHECK_ARGS)

# Trains (or resumes: the state in weights/siammask-lite/ is committed) the compact default model's second
# stage from the committed first one (weights/siammask-lite/v1-step4000.pt), tunes the preset of the best
# validated checkpoint and ships it as siamtrack/weights/siammask-lite.pt (package data).
# Resumable in chunks: add MAX_STEPS=500.
MAX_STEPS ?=
TRAIN_PRECISION ?= $(shell grep -qsE 'avx512_bf16|amx_bf16' /proc/cpuinfo && echo bf16 || echo fp32)
train-lite: setup
	$(PIP_INSTALL) -e ".[train]"
	$(VENV)/bin/siamtrack train configs/siammask-lite.toml --out weights/siammask-lite --resume \
		--precision $(TRAIN_PRECISION) $(if $(MAX_STEPS),--max-steps $(MAX_STEPS))
	$(PY) scripts/tune_preset.py weights/siammask-lite/best.pt --root ../shared/train_data/videos \
		--sequences hike,soccerball,swing --write
	$(PY) scripts/ship_model.py weights/siammask-lite/best.pt

# Trains (or resumes) siammask-nano's second stage from the committed first one
# (weights/siammask-nano/first-run-step1750.pt: NanoTrack v3 unchanged + the stage-1 mask branch) and ships
# the best validated checkpoint as siamtrack/weights/siammask-nano.pt (fp32: NanoTrack's weights stay exact;
# the registry's siammask-nano preset). Resumable in chunks: add MAX_STEPS=500.
train-nano: setup
	$(VENV)/bin/siamtrack train configs/siammask-nano-stage2.toml --out runs/siammask-nano-stage2 --resume \
		--precision fp32 $(if $(MAX_STEPS),--max-steps $(MAX_STEPS))
	$(PY) scripts/ship_model.py runs/siammask-nano-stage2/best.pt --model siammask-nano --fp32 --registry-preset

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
