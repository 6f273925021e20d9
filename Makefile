# The README's two commands: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch is pinned: any other version pulls gigabytes of CUDA wheels.
PIP    := $(BIN)/pip install --quiet --constraint constraints.txt
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Debian packages the tests need: a real MQTT broker, systemd-analyze, image tools for flash.sh tests,
# a real browser and a real PostgreSQL for the fleet web pages and the shared fleet history.
APT_PKGS := mosquitto mosquitto-clients openssl systemd fdisk dosfstools mtools shellcheck chromium fonts-dejavu-core postgresql tmux

.PHONY: demo test venv convert system-deps models schemas lint pytest bench clean arm64-check arm64-deps

demo: venv models
	$(BIN)/lookout sim --devices 3 --duration 60

test: venv convert system-deps models lint pytest

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[desktop,dev]'
	@touch $@

# The build-time converters (`models add --from-torch`), so that CI exercises them; never on a device.
convert: $(VENV)/.convert

$(VENV)/.convert: $(STAMP)
	$(PIP) -e '.[desktop,dev,convert]'
	@touch $@

system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

models: venv
	$(BIN)/lookout models build
	$(BIN)/lookout models verify

# The JSON Schemas in app/telemetry/schemas/ are generated from the payload models (app/telemetry/contract.py).
schemas: venv
	$(BIN)/python -m app.telemetry.schemas --write

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

pytest: venv
	$(BIN)/pytest -q

bench: venv models
	$(BIN)/lookout bench --model blazeface-short --runtime tflite,executorch,torchscript-lite --frames 300 --json out/bench.json --plot out/bench.png
	$(BIN)/python scripts/bench_pipeline.py
	$(BIN)/python scripts/bench_vs_invoke.py
	$(BIN)/python scripts/bench_hot_swap.py

clean:
	rm -rf $(VENV) out build *.egg-info

# The emulated Raspberry Pi (scripts/arm64_check.py): install.sh and lookout run on a Debian bookworm
# arm64 root under qemu-user, compared with this host. ARM64_TORCH=1 adds install.sh --torch.
ARM64_APT_PKGS := qemu-user-static binfmt-support debootstrap zstd mosquitto systemd util-linux

arm64-check: venv models arm64-deps
	$(SUDO) env ARM64_TORCH=$(ARM64_TORCH) ARM64_FRESH=$(ARM64_FRESH) $(BIN)/python scripts/arm64_check.py

arm64-deps:
	@missing=""; for p in $(ARM64_APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get -o DPkg::Lock::Timeout=600 update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
