# hwloop — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-full bench traces lint clean venv

venv: $(STAMP)

# The CPU build of torch is pinned in pyproject.toml: a bare `torch` would pull a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hwloop doctor
	$(BIN)/hwloop generate systolic -o out/systolic
	$(BIN)/hwloop sim systolic --workload dqn --first 3 --seed 1
	@# RTL in the loop: constrained BO over 16 small designs, each built and co-simulated
	mkdir -p out/demo
	$(BIN)/hwloop sweep --space constraints/demo.toml --method cbo --budget 6 --fidelity rtl \
		--db out/demo/runs.db --timeout 1200 --log-dir out/demo/logs
	$(BIN)/hwloop report --db out/demo/runs.db -o out/demo/report
	$(BIN)/hwloop best --db out/demo/runs.db
	@echo "demo sweep report: out/demo/report/index.html"

test: $(STAMP)
	$(BIN)/ruff check hwloop hdl sim learn search tests benchmarks
	$(BIN)/python -m pytest -n 2 --dist loadgroup tests

test-full: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "" tests
	$(BIN)/hwloop regress --full

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

traces: $(STAMP)
	$(BIN)/hwloop trace recipes --all -o traces

lint: $(STAMP)
	$(BIN)/ruff check hwloop hdl sim learn search tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
