# Two commands do all the set-up on a fresh machine:
#   make demo   train a small MGiaD on real data for a few minutes on the CPU
#   make test   run the test suite
PYTHON ?= python3
PIP := $(PYTHON) -m pip
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup demo test lint

setup:
	@# torch/torchvision: keep an existing install; else the pinned release (on these machines from local disk)
	@$(PYTHON) -c "import torch, torchvision" 2>/dev/null || $(PIP) install -q --root-user-action=ignore torch==2.14.1 torchvision==0.29.1
	@# always (re-)install this checkout, so that `mgiad` and `python -m mgiad` run this code;
	@# --no-build-isolation: setup.py prebuilds the native kernels against the torch installed here
	@$(PIP) install -q --root-user-action=ignore "setuptools>=77" wheel
	@$(PIP) install -q --root-user-action=ignore --no-build-isolation -e ".[test]"
	@$(PYTHON) -c "from mgiad.ops import native; s = native.status(); print('make: native kernels:', s['build'] or s['reason'])"
	@# real FashionMNIST from Debian when we may install it (root, apt; MGIAD_NO_APT=1 skips it);
	@# otherwise `mgiad demo --download` fetches it. Said before it happens, never fatal.
	@if [ ! -d $(FMNIST) ] && [ "$$(id -u)" = 0 ] && [ -z "$(MGIAD_NO_APT)" ] && command -v apt-get >/dev/null; then \
		echo "make: installing the Debian package dataset-fashion-mnist (real FashionMNIST for the demo and tests) with apt-get as root; skip with MGIAD_NO_APT=1"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) >/dev/null \
		|| echo "make: apt-get could not install dataset-fashion-mnist; continuing without it (mgiad demo --download fetches FashionMNIST)"; fi

demo: setup
	$(PYTHON) -m mgiad demo

test: setup
	$(PYTHON) -m pytest -q

lint:
	ruff check mgiad tests
