# Fresh machine: `make demo` (set up + run the main job on local Ray), `make test`.
# The install goes through uv (pinned in constraints.txt): the same packages as pip, in ~30 s instead
# of pip's ~3 min for torch's CUDA build; pip takes over where uv cannot reach the index.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt uv
	$(BIN)/uv pip install -q --python $(BIN)/python -c constraints.txt -e ".[test]" || \
	    $(BIN)/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/playerseg demo $(ARGS)

# -X faulthandler: a crash after the tests (in the interpreter's exit, where pytest's own handler is off)
# still prints every thread's stack
test: $(STAMP)
	$(BIN)/python -X faulthandler -m pytest -q --durations=25 $(ARGS)

clean:
	rm -rf $(VENV) runs outputs
