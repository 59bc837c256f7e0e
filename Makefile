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

demo:  ## the whole recipe on a CPU: build the tiny student, then dSFT -> AIFT -> dDPO -> eval
	westwind init-model --out outputs/demo-cpu/base --data data/demo/sft.jsonl
	westwind run recipes/demo-cpu.yaml

bench:  ## side-by-side benchmarks vs the TRL CLI (tables + benchmarks/results/*.json); see docs/benchmarks.md
	$(PY) benchmarks/run_all.py
