# The two commands of the README: `make demo` runs an onboarding on the local sandbox tenant,
# `make test` runs the whole suite. Both set up what they need first.
PY := .venv/bin/python
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup demo test lint unit bench clean

setup:
	@scripts/bootstrap.sh

demo: setup
	$(PY) -m demo

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# The whole suite on the fast profile, and beside it the end-to-end scenarios again on the realistic
# profile (docs/sandbox.md): replication and propagation delays of minutes to an hour on the tenant
# clock. The two runs share nothing but the machine; side by side they fit CI's time. Both must pass.
test: setup lint
	@log=$$(mktemp); \
	SANDBOX_PROFILE=realistic $(PY) -m pytest tests/e2e -q -p no:logging >"$$log" 2>&1 & realistic=$$!; \
	$(PY) -m pytest; fast=$$?; \
	wait $$realistic; status=$$?; \
	echo "== the end-to-end scenarios on the realistic profile (SANDBOX_PROFILE=realistic) =="; \
	if [ $$status -eq 0 ]; then tail -n 3 "$$log"; else cat "$$log"; fi; \
	rm -f "$$log"; \
	[ $$fast -eq 0 ] && [ $$status -eq 0 ]

bench: setup
	$(PY) -m bench

clean:
	rm -rf .venv .venv-infra .sandbox .funchost .pytest_cache .mypy_cache .ruff_cache
