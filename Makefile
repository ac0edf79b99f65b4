# Two set-up commands for a newcomer: `make demo` and `make test`. Each installs what it needs from a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest args (e.g. make test PYTEST_ARGS="-k lm")
PYTEST_ARGS ?=

.PHONY: install demo test check-sync export nbtest nbtest-slow pytest docs readme bench clean

$(STAMP): settings.ini setup.py examples/dspyopt-greedy/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip wheel
	# torch is pinned in the [torch] extra: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/python -m pip install -q -e ".[dev,torch]"
	# an optimizer plugin of another distribution: the contract tests and the entry-point discovery use it
	$(BIN)/python -m pip install -q --no-deps -e examples/dspyopt-greedy
	$(BIN)/python -m pip check
	touch $@

# Debian packages the tests need: headless Chromium (driven by Playwright with executable_path; no browser download), PostgreSQL
$(VENV)/.apt: | $(STAMP)
	command -v chromium >/dev/null || { command -v apt-get >/dev/null && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) || echo "warning: could not install chromium; the browser test will be skipped"; }
	# PostgreSQL 15's server programs: the store tests start a throwaway server (dspyopt_nb.store.postgres)
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { command -v apt-get >/dev/null && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || echo "warning: could not install postgresql; the PostgreSQL tests will be skipped"; }
	touch $@

install: $(STAMP)

# The main job: optimize the bundled SST-2 task with the embedded model and report on held-out data.
demo: $(STAMP)
	$(BIN)/python -c "from dspyopt_nb.demo import main; main()"

# Notebooks and modules in sync, notebooks clean, lessons run (nbdev_test), then pytest (the slow, real paths).
test: $(STAMP) $(VENV)/.apt check-sync nbtest nbtest-slow pytest

check-sync: $(STAMP)
	@before=$$(git status --porcelain -- dspyopt_nb nbs README.md | sort); \
	$(MAKE) --no-print-directory export >/dev/null; \
	after=$$(git status --porcelain -- dspyopt_nb nbs README.md | sort); \
	if [ "$$before" != "$$after" ]; then \
	  echo "Notebooks, exported modules and README.md were out of sync, or notebooks were not clean:"; \
	  diff <(echo "$$before") <(echo "$$after"); \
	  echo "Fix: run 'make export' (nbdev_export, nbdev_clean, README from nbs/index.ipynb) and commit the result."; exit 1; fi; \
	echo "notebooks, modules and README in sync; notebooks clean"

# Edit notebooks, then: make export
export: $(STAMP)
	$(BIN)/nbdev_export && $(BIN)/nbdev_clean
	mkdir -p dspyopt_nb/data/jobs && cp nbs/jobs/optimize.ipynb dspyopt_nb/data/jobs/   # the job notebook ships with the package
	$(BIN)/python -c "from dspyopt_nb.docs_offline import readme; readme()"

nbtest: $(STAMP)
	$(BIN)/nbdev_test --n_workers 2 --timing

# The lessons whose slow cells (the embedded model, real servers) back what their prose says; the GA's, the torch
# engine's and the scheduler's slow cells are run as tests instead (tests/test_ga.py, test_torch_engine.py, test_scheduler.py).
SLOW_LESSONS := nbs/00_engines/04_adapter.ipynb nbs/07_stats/00_stats.ipynb nbs/30_notebook/01_magics.ipynb \
	nbs/40_jobs/00_jobs.ipynb nbs/45_store/01_postgres.ipynb nbs/90_insights/00_analytics.ipynb
nbtest-slow: $(STAMP) $(VENV)/.apt
	for nb in $(SLOW_LESSONS); do $(BIN)/nbdev_test --flags slow --timing --path $$nb || exit 1; done

pytest: $(STAMP)
	$(BIN)/python -m pytest -q --durations=10 tests $(PYTEST_ARGS)

# Docs: quarto when present (GitHub CI), else an offline HTML build of the executed notebooks.
docs: $(STAMP)
	if command -v quarto >/dev/null; then $(BIN)/nbdev_docs; else $(BIN)/python -c "from dspyopt_nb.docs_offline import main; main()"; fi

readme: $(STAMP)
	$(BIN)/python -c "from dspyopt_nb.docs_offline import readme; readme()"

bench: $(STAMP)
	$(BIN)/python benchmarks/lm_throughput.py

clean:
	rm -rf _docs _proc build dist *.egg-info runs
