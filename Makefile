# capgate: `make demo` runs the sidecar on real agent traffic; `make test` runs every check.
# Both install what they need first (scripts/bootstrap.sh, idempotent).
VENV := .venv/bin
TOOLS := .tools/bin

.PHONY: demo test bootstrap check proto bundles bench fmt workload lock

demo: bootstrap
	$(VENV)/capgate demo

test: bootstrap check
	$(VENV)/python -m pytest

bootstrap:
	bash scripts/bootstrap.sh

# Generated files are fresh, proto and Rego lint clean, Python lint clean.
check: bootstrap
	$(TOOLS)/buf lint
	scripts/gen_proto.sh --check
	$(VENV)/python scripts/sync_bundles.py --check
	$(TOOLS)/opa fmt --list --fail rego/
	$(TOOLS)/opa check --strict rego/
	$(VENV)/python scripts/builtins_gap.py --check
	$(VENV)/ruff check .

proto: bootstrap
	scripts/gen_proto.sh

# requirements/image.lock: the image's Python dependencies (and the tests'), pinned with
# hashes; after a change to pyproject's dependencies. Existing pins are kept when they
# still fit; `make lock LOCK_ARGS=--upgrade` takes the newest versions allowed.
lock: bootstrap
	CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/pip-compile --quiet --generate-hashes \
		--allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links $(LOCK_ARGS) \
		--output-file requirements/image.lock pyproject.toml

bundles:
	python3 scripts/sync_bundles.py

# Regenerate the AgentDojo workload from the agentdojo package (a development extra).
workload: bootstrap
	$(VENV)/python -m pip install -q -e ".[agentdojo]"
	$(VENV)/python scripts/export_agentdojo.py

# Benchmarks print JSON and write bench/results/; run by hand, never in `make test`.
bench: bootstrap
	$(VENV)/python bench/authorize_load.py
	$(VENV)/python bench/authorize_load.py --budgets --out bench/results/budgets-1-process.json
	$(VENV)/python bench/authorize_load.py --budgets --servers 2 \
		--out bench/results/budgets-2-processes.json
	$(VENV)/python bench/identity.py
	$(VENV)/python bench/authorize_load.py --no-events --out bench/results/authorize-no-events.json
	$(VENV)/python bench/outbox.py
	$(VENV)/python bench/exporters.py
	$(VENV)/python bench/engines.py

fmt: bootstrap
	$(VENV)/ruff format service clients tests bench scripts
	$(TOOLS)/opa fmt -w rego/
