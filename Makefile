# make help lists the targets. Everything installs itself into .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
FLASK := $(BIN)/flask --app wsgi
PORT ?= 5000
# make run serves on $(PORT), so links, OAuth redirects and the sandbox's WeChat URLs use it too,
# unless PUBLIC_BASE_URL is set in the environment (which always wins).
RUN_ENV := PUBLIC_BASE_URL="$${PUBLIC_BASE_URL:-http://127.0.0.1:$(PORT)}"

.DEFAULT_GOAL := help
.PHONY: help install run test test-mysql bench lint migrate worker cron check clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/\$$(PORT)/$(PORT)/g' \
		| awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(INSTALLED): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(INSTALLED)

install: $(INSTALLED) ## Create .venv and install the pinned requirements

run: $(INSTALLED) ## Migrate, load demo data and serve on http://127.0.0.1:$(PORT) (SQLite, sandbox WeChat)
	$(RUN_ENV) $(FLASK) db upgrade
	$(RUN_ENV) $(FLASK) demo load
	@echo ""
	@echo "  Backend:        http://127.0.0.1:$(PORT)"
	@echo "  Recharge page:  http://127.0.0.1:$(PORT)/r"
	@echo "  OpenAPI:        http://127.0.0.1:$(PORT)/openapi.json"
	@echo "  Member login:   POST /api/auth/wxa-login {\"code\": \"sandbox-demo-alice\"}"
	@echo "  Staff login:    POST /admin/api/auth/login {\"username\": \"admin\", \"password\": \"demo-password\"}"
	@echo ""
	$(RUN_ENV) $(FLASK) run --host 127.0.0.1 --port $(PORT)

test: $(INSTALLED) ## Run the tests (SQLite + in-process jobs; MariaDB + Redis when TEST_DATABASE_URL / TEST_REDIS_URL are set)
	$(BIN)/python -m pytest

bench: $(INSTALLED) ## Ledger benchmark on DATABASE_URL (see bench/)
	$(BIN)/python -m bench.ledger

lint: $(INSTALLED) ## ruff check + format check
	$(BIN)/ruff check mp_backend jobs tests bench
	$(BIN)/ruff format --check mp_backend jobs tests bench

migrate: $(INSTALLED) ## Apply migrations to DATABASE_URL
	$(FLASK) db upgrade

check: $(INSTALLED) ## Verify the ledger invariants on DATABASE_URL
	$(FLASK) ledger check

worker: $(INSTALLED) ## An RQ worker (needs REDIS_URL)
	$(BIN)/python -m jobs.worker

cron: $(INSTALLED) ## The RQ cron scheduler (needs REDIS_URL)
	@test -n "$(REDIS_URL)" || { echo "make cron needs REDIS_URL (e.g. REDIS_URL=redis://127.0.0.1:6379/0 make cron);" \
		"without Redis, jobs run in the web process and there is no scheduler to start." >&2; exit 2; }
	$(BIN)/rq cron jobs.schedule --url "$(REDIS_URL)"

clean: ## Remove .venv and the SQLite database
	rm -rf $(VENV) instance
