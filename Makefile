.PHONY: install test test-fast lint format bench demo

PY ?= python

install:  ## the README's set-up command
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -r requirements.txt -e ".[dev]"

test:  ## the whole suite, slow end-to-end cases included (what CI runs)
	$(PY) -m pytest -q

test-fast:  ## skip the cases marked slow
	$(PY) -m pytest -q -m "not slow"

lint:
	ruff check .
	ruff format --check .

format:
	ruff check --fix .
	ruff format .

# `make demo SEED=1` reruns the whole demo with another seed (model init, dSFT, AIFT sampling, dDPO) into
# outputs/demo-cpu-seed1; the data in data/demo/ stays the same.
SEED ?= 0
DEMO_OUT ?= outputs/demo-cpu$(if $(filter-out 0,$(SEED)),-seed$(SEED))

demo:  ## the whole recipe on a CPU: build the tiny student, then dSFT -> AIFT -> dDPO -> eval
	westwind init-model --out $(DEMO_OUT)/base --data data/demo/sft.jsonl --seed $(SEED)
	westwind run recipes/demo-cpu.yaml --output_dir $(DEMO_OUT) --model.model_name_or_path $(DEMO_OUT)/base \
		--sft.seed $(SEED) --aift.seed $(SEED) --dpo.seed $(SEED)

bench:  ## side-by-side benchmarks vs the TRL CLI (tables + benchmarks/results/*.json); see docs/benchmarks.md
	$(PY) benchmarks/run_all.py
