# Two set-up commands for a newcomer: `make demo` and `make test`. Each installs what it needs from a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest args (e.g. make test PYTEST_ARGS="-k lm")
PYTEST_ARGS ?=

.PHONY: install labextension demo test check-sync export nbtest pytest docs lessons site readme bench clean

$(STAMP): settings.ini setup.py examples/dspyopt-greedy/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip wheel
	# torch is pinned in the [torch] extra: an unpinned torch pulls a multi-GB CUDA build
	$(BIN)/python -m pip install -q -e ".[dev,torch]"
	# an optimizer plugin of another distribution: the contract tests and the entry-point discovery use it
	$(BIN)/python -m pip install -q --no-deps -e examples/dspyopt-greedy
	$(BIN)/python -m pip check
	touch $@

# Debian packages the browser test needs (headless Chromium, driven by Playwright with executable_path; no browser download)
$(VENV)/.apt: | $(STAMP)
	command -v chromium >/dev/null || { command -v apt-get >/dev/null && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) || echo "warning: could not install chromium; the browser test will be skipped"; }
	touch $@

# The JupyterLab extension (extension/, TypeScript) prebuilt into dspyopt_nb/labextension; rebuilt only when its sources
# change. jlpm and @jupyterlab/builder come with JupyterLab (installed by $(STAMP)); packages from yarn.lock.
LABEXT := dspyopt_nb/labextension/package.json
EXT_SRC := $(wildcard extension/src/*.ts extension/style/* extension/schema/*.json extension/scripts/*.js) \
           extension/package.json extension/yarn.lock extension/tsconfig.json
$(LABEXT): $(EXT_SRC) | $(STAMP)
	@command -v node >/dev/null || { echo "node is missing, so the JupyterLab extension cannot be built. Fix: install Node.js >= 18 (apt-get install -y nodejs npm)."; exit 1; }
	cd extension && export PATH="$(CURDIR)/$(BIN):$$PATH" PYTHON="$(CURDIR)/$(BIN)/python" && jlpm install --immutable && jlpm build:prod
	touch $@

# pip install -e does not install data_files (a wheel does): link the built extension into the virtualenv and enable the
# server extension there, as installing the wheel does (share/jupyter/labextensions, etc/jupyter/jupyter_server_config.d)
$(VENV)/.labext: $(LABEXT) jupyter-config/jupyter_server_config.d/dspyopt_nb.json extension/install.json
	mkdir -p $(VENV)/share/jupyter/labextensions $(VENV)/etc/jupyter/jupyter_server_config.d
	ln -sfn "$(CURDIR)/dspyopt_nb/labextension" $(VENV)/share/jupyter/labextensions/dspyopt
	cp jupyter-config/jupyter_server_config.d/dspyopt_nb.json $(VENV)/etc/jupyter/jupyter_server_config.d/
	touch $@

labextension: $(VENV)/.labext

install: $(STAMP) $(VENV)/.labext

# The main job: optimize the bundled SST-2 task with the embedded model and report on held-out data.
demo: $(STAMP) $(VENV)/.labext
	$(BIN)/python -c "from dspyopt_nb.demo import main; main()"

# Notebooks and modules in sync, notebooks clean, lessons run (nbdev_test), then pytest (the slow, real paths).
test: $(STAMP) $(VENV)/.apt $(VENV)/.labext check-sync nbtest pytest

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

pytest: $(STAMP) $(VENV)/.labext
	$(BIN)/python -m pytest -q --durations=10 tests $(PYTEST_ARGS)

# Docs: every lesson executed (slow cells included) into _exec/, processed by nbdev's processors into _proc/, rendered by
# Quarto where it is installed (GitHub's docs workflow), else by the offline builder, into _docs/; then checked.
docs: $(STAMP) $(LABEXT)
	$(BIN)/python -m dspyopt_nb.docs_offline docs

# Execute every lesson and store its outputs (and widget state) in it, machine paths scrubbed: then commit the lessons.
lessons: $(STAMP)
	$(BIN)/python -m dspyopt_nb.docs_offline lessons

# The site from the outputs stored in the lessons (no execution), checked: what `make test` checks, in _docs/.
site: $(STAMP) $(LABEXT)
	$(BIN)/python -m dspyopt_nb.docs_offline site

readme: $(STAMP)
	$(BIN)/python -c "from dspyopt_nb.docs_offline import readme; readme()"

bench: $(STAMP)
	$(BIN)/python benchmarks/lm_throughput.py

clean:
	rm -rf _docs _proc _exec build dist *.egg-info runs extension/lib extension/tsconfig.tsbuildinfo dspyopt_nb/labextension
