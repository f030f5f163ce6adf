# nmi: `make demo` and `make test` do everything on a fresh machine (see README.md).
BUILD_DIR ?= build
ASAN_DIR ?= build-asan
CMAKE_FLAGS ?=
NMI_CACHE_DIR ?= /var/cache/nmi
export NMI_CACHE_DIR
# The tests' Python: a virtualenv scripts/setup keeps in the cache (pytest, azure-identity, ...).
PYTHON := $(NMI_CACHE_DIR)/venv/bin/python
COMMON_CMAKE := -DPython3_EXECUTABLE=$(PYTHON)
CTEST_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all setup kube configure build asan test test-release test-asan demo clean

all: build

# Installs what the build and tests need (idempotent).
setup:
	scripts/setup

# kube-apiserver, etcd, kubectl and helm, built from tools/kube and cached by version.
kube: setup
	scripts/kube-testenv build

configure: setup
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DCMAKE_CXX_COMPILER=g++ $(COMMON_CMAKE) $(CMAKE_FLAGS)

# The release daemon: $(BUILD_DIR)/bin/nmi.
build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

# ASan+UBSan, compiled with clang: unit and integration tests (and the proof that clang builds it).
asan: setup
	cmake -S . -B $(ASAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ $(COMMON_CMAKE) \
	  -DNMI_SANITIZE="address;undefined" -DNMI_KUBE_TESTS=OFF -DNMI_TOOL_TESTS=OFF $(CMAKE_FLAGS)
	cmake --build $(ASAN_DIR) -j $(JOBS)

test: kube build asan
	$(MAKE) test-release test-asan

test-release:
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) $(CTEST_FLAGS)

test-asan:
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(ASAN_DIR) --output-on-failure -j $(JOBS) $(CTEST_FLAGS)

# The emulators and nmi on loopback; a pod fetches its token (KEEP=1 keeps them running).
demo: build
	BUILD_DIR=$(BUILD_DIR) scripts/demo

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
