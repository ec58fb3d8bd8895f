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

# The realistic profile (SANDBOX_PROFILE=realistic $(PY) -m pytest tests/e2e) is not in CI yet: on main,
# some scenarios still fail under it (issue 15 stays open; its note lists them and the causes found).
test: setup lint
	$(PY) -m pytest

bench: setup
	$(PY) -m bench

clean:
	rm -rf .venv .venv-infra .sandbox .funchost .pytest_cache .mypy_cache .ruff_cache
