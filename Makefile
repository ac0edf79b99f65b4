# Two set-up commands for a newcomer: `make demo` and `make test`. Each installs what it needs from a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest args (e.g. make test PYTEST_ARGS="-k lm")
PYTEST_ARGS ?=

.PHONY: install labextension demo test check-sync export nbtest nbtest-slow pytest deploy-check stack docs lessons site readme bench clean

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
test: $(STAMP) $(VENV)/.apt $(VENV)/.labext check-sync deploy-check nbtest nbtest-slow pytest

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

# The deployment files (deploy/, .github/workflows): the Dockerfile linted (hadolint), the shell scripts (shellcheck), the
# workflows (actionlint), compose.yaml against the Compose Specification, the image's pins within settings.ini's ranges, every Kubernetes overlay rendered, validated
# against the Kubernetes schemas and checked against the policies (dspyopt_nb.deploy.k8s). A few seconds; no daemon.
deploy-check: $(STAMP)
	$(BIN)/hadolint deploy/Dockerfile
	$(BIN)/shellcheck deploy/entrypoint.sh deploy/ci/*.sh
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/actionlint
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml
	$(BIN)/python deploy/lock.py --check
	$(BIN)/python -m dspyopt_nb.deploy.k8s check deploy/k8s/overlays/dev deploy/k8s/overlays/staging deploy/k8s/overlays/prod deploy/k8s/ci

# The production stack on one machine without containers: PostgreSQL, MLflow with basic-auth, the runtime serving the
# demo program, the scheduler, all on 127.0.0.1 (dspyopt_nb.deploy.stack); Ctrl-C stops them. STACK_ARGS="--lm scripted:..."
STACK_ARGS ?=
stack: $(STAMP) $(VENV)/.apt
	$(BIN)/python -m dspyopt_nb.deploy.stack up $(STACK_ARGS)

# Lessons that declare tables run each in a fresh process: a test worker that already imported a layer's exported
# models (another lesson did) would have the same tables declared twice in one metadata.
TABLE_LESSONS := nbs/50_serve/00_models.ipynb nbs/60_learn/05_models.ipynb nbs/70_security/02_tables.ipynb nbs/90_insights/03_tables.ipynb
# their names as one alternation for nbtest's skip pattern: 00_models|05_models|...
empty :=
TABLE_SKIP_RE := $(subst $(empty) $(empty),|,$(basename $(notdir $(TABLE_LESSONS))))
nbtest: $(STAMP)
	$(BIN)/nbdev_test --n_workers 2 --timing --skip_file_re '^([_.]|$(TABLE_SKIP_RE))'
	for nb in $(TABLE_LESSONS); do $(BIN)/nbdev_test --path $$nb || exit 1; done

# The lessons whose slow cells (the embedded model, real servers) back what their prose says; the GA's, the torch
# engine's and the scheduler's slow cells are run as tests instead (tests/test_ga.py, test_torch_engine.py, test_scheduler.py).
SLOW_LESSONS := nbs/00_engines/04_adapter.ipynb nbs/07_stats/00_stats.ipynb nbs/30_notebook/01_magics.ipynb \
	nbs/40_jobs/00_jobs.ipynb nbs/45_store/01_postgres.ipynb nbs/60_learn/16_lesson.ipynb nbs/90_insights/00_analytics.ipynb
nbtest-slow: $(STAMP) $(VENV)/.apt
	for nb in $(SLOW_LESSONS); do $(BIN)/nbdev_test --flags slow --timing --path $$nb || exit 1; done

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

# Every benchmark at a size that fits this 2-core machine (about an hour); each writes benchmarks/results/<name>.json
# with the command, commit, versions and machine (the long accuracy ones to *_small.json, beside their full runs).
# Not part of `make test`. GPU figures come only from benchmarks/gpu.py run on a GPU (here: its CPU correctness check).
bench: $(STAMP)
	$(BIN)/python benchmarks/startup.py --rounds 3
	$(BIN)/python benchmarks/overhead.py --n 200 --rounds 3
	$(BIN)/python benchmarks/bootstrap.py --n 2000 --repeat 1
	$(BIN)/python benchmarks/lm_throughput.py --n 20 --rounds 1
	$(BIN)/python benchmarks/gpu.py --small
	$(BIN)/python benchmarks/gpu_check.py --n 8 --threads 4
	$(BIN)/python benchmarks/torch_engine_gpu.py --n 8 --threads 4
	$(BIN)/python benchmarks/concurrency.py --levels 1,10,100,1000,2000 --latency 2 --calls 40
	$(BIN)/python benchmarks/cycle.py --optimizer mipro --preset medium --latency 1 --threads 32
	$(BIN)/python benchmarks/compare_optimizers.py --tasks sst2 --optimizers bootstrap,ga --n-train 30 --n-val 20 --n-test 60 --budget 120 --out benchmarks/results/compare_optimizers_small.json
	$(BIN)/python benchmarks/ga_ablation.py --tasks sst2 --seeds 0 --budget 120 --n-train 30 --n-val 20 --n-test 60 --out benchmarks/results/ga_ablation_small.json
	$(BIN)/python benchmarks/demo_vs_handwritten.py --optimizer bootstrap --n-test 60 --out benchmarks/results/demo_vs_handwritten_small.json

clean:
	rm -rf _docs _proc _exec build dist *.egg-info runs extension/lib extension/tsconfig.tsbuildinfo dspyopt_nb/labextension
