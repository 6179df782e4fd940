# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint format clean

$(STAMP): requirements.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "Python 3.11 is needed ($(PYTHON) not found); set PYTHON=..."; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing the requirements into $(VENV) (the first time takes a minute or two) …"
	$(PY) -m pip install --disable-pip-version-check --progress-bar on -r requirements.txt
	@touch $(STAMP)

## Run the portal on this machine: local driver, SQLite, the machine's Redis, local sign-in.
run: $(STAMP)
	$(PY) -m devtools.run

## Run the whole test suite (unit, real services, local driver end to end, emulator, browser).
test: $(STAMP)
	$(PY) -m devtools.test_env
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean:
	rm -rf var/indexes var/portal.sqlite3 var/staticfiles
