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

# The end-to-end scenarios run twice: as part of the suite (fast sandbox profile), then under the
# realistic profile's replication and propagation delays on a moved clock (docs/sandbox.md, "Profiles").
test: setup lint
	$(PY) -m pytest
	SANDBOX_PROFILE=realistic $(PY) -m pytest tests/e2e

bench: setup
	$(PY) -m bench

clean:
	rm -rf .venv .venv-infra .sandbox .funchost .pytest_cache .mypy_cache .ruff_cache
