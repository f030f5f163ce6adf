# nmi: `make demo` and `make test` do everything on a fresh machine (see README.md).
BUILD_DIR ?= build
ASAN_DIR ?= build-asan
CMAKE_FLAGS ?=
NMI_CACHE_DIR ?= /var/cache/nmi
export NMI_CACHE_DIR
# ccache hits across checkouts (CI clones to a new directory): paths relative to the checkout, and
# the build directory left out of the hash of debug builds.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := true
# The tests' Python: a virtualenv scripts/setup keeps in the cache (pytest, azure-identity, ...).
PYTHON := $(NMI_CACHE_DIR)/venv/bin/python
COMMON_CMAKE := -DPython3_EXECUTABLE=$(PYTHON)
CTEST_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all setup kube configure build asan test test-release test-asan demo demo-node check tidy tsan coverage fuzz fuzz-configure fuzz-long bench bench-kube bench-dnat soak image clean

all: build

# Installs what the build and tests need (idempotent).
setup:
	scripts/setup

# kube-apiserver, etcd, kubectl and helm, built from tools/kube, and the real node's kubelet,
# controller-manager, scheduler, containerd and CNI plugins (tools/node), cached by version.
kube: setup
	scripts/kube-testenv build
	scripts/node-testenv build >/dev/null

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

# Heavier checks, not part of `make test`: clang-tidy, ThreadSanitizer, coverage.
check: tidy tsan coverage

TIDY_DIR ?= build-tidy
tidy: setup
	cmake -S . -B $(TIDY_DIR) -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DNMI_KUBE_TESTS=OFF \
	  -DNMI_TOOL_TESTS=OFF $(COMMON_CMAKE) >/dev/null
	scripts/run-tidy $(TIDY_DIR)

TSAN_DIR ?= build-tsan
tsan: setup
	cmake -S . -B $(TSAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
	  -DNMI_SANITIZE=thread -DNMI_KUBE_TESTS=OFF -DNMI_TOOL_TESTS=OFF $(COMMON_CMAKE)
	cmake --build $(TSAN_DIR) -j $(JOBS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --test-dir $(TSAN_DIR) --output-on-failure -j $(JOBS) -L 'unit|integration'

COV_DIR ?= build-cov
coverage: setup
	cmake -S . -B $(COV_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=g++ \
	  -DNMI_COVERAGE=ON -DNMI_KUBE_TESTS=OFF -DNMI_TOOL_TESTS=OFF $(COMMON_CMAKE)
	cmake --build $(COV_DIR) -j $(JOBS)
	ctest --test-dir $(COV_DIR) --output-on-failure -j $(JOBS) -L 'unit|integration'
	gcovr -r . --object-directory $(COV_DIR) --filter 'src/' --exclude '.*_test\.cc' \
	  --txt $(COV_DIR)/coverage.txt --print-summary
	@echo "per-file coverage: $(COV_DIR)/coverage.txt"

# libFuzzer (clang, ASan+UBSan), docs/testing.md "Fuzzing". `make fuzz` runs one target
# (FUZZ_TARGET, default the request-target canonicaliser) for FUZZ_SECONDS; new inputs go to a
# scratch corpus in the build tree, the committed seeds in fuzz/corpus/<target>/ are only read.
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGET ?= request_target
fuzz-configure: setup
	cmake -S . -B $(FUZZ_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
	  -DNMI_FUZZ=ON -DNMI_KUBE_TESTS=OFF -DNMI_TOOL_TESTS=OFF $(COMMON_CMAKE)

fuzz: fuzz-configure
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target $(FUZZ_TARGET)_fuzz
	mkdir -p $(FUZZ_DIR)/corpus/$(FUZZ_TARGET)
	$(FUZZ_DIR)/bin/$(FUZZ_TARGET)_fuzz -max_total_time=$(FUZZ_SECONDS) \
	  $(addprefix -dict=,$(wildcard fuzz/$(FUZZ_TARGET).dict)) \
	  $(FUZZ_DIR)/corpus/$(FUZZ_TARGET) fuzz/corpus/$(FUZZ_TARGET)

# Every target in turn, each as FUZZ_LONG_WORKERS processes for FUZZ_LONG_SECONDS of wall time:
# 8 targets x 270 s x 2 workers = 1.2 CPU-hours on an otherwise idle 2-core machine (36 min).
# Prints a summary (scripts/fuzz-long); fails on any crash. FUZZ_LONG_TARGETS=a,b for a subset.
FUZZ_LONG_SECONDS ?= 270
FUZZ_LONG_WORKERS ?= 2
FUZZ_LONG_TARGETS ?=
fuzz-long: fuzz-configure
	cmake --build $(FUZZ_DIR) -j $(JOBS) --target fuzz_all
	scripts/fuzz-long $(FUZZ_DIR) --seconds $(FUZZ_LONG_SECONDS) --workers $(FUZZ_LONG_WORKERS) \
	  $(if $(FUZZ_LONG_TARGETS),--targets $(FUZZ_LONG_TARGETS))

# Benchmarks (docs/benchmarks.md).
bench: build
	bench/loopback.sh $(BUILD_DIR)

# 5,000 pods (250 on the node), 1,000 identities and bindings in a real API server: nmi's
# time to ready and RSS (docs/benchmarks.md, "Kubernetes scale").
bench-kube: build kube
	$(PYTHON) bench/kube_scale.py --build $(BUILD_DIR)

# The same cached token through interception: a pod of a simulated node (scripts/devenv) asks
# 169.254.169.254, nmi's DNAT rule sends it to nmi, then to nginx behind the same rule (root).
bench-dnat: build kube
	bench/dnat.sh $(BUILD_DIR)

# Soak (docs/testing.md, "Soak"): nmi on a simulated node (scripts/devenv) for SOAK_MINUTES under
# mixed pod and host load, API server restarts, identity and pod churn and short-lived tokens;
# RSS, fds, caches and metric series sampled, plotted and judged (zero growth after warm-up).
# Results in $(BUILD_DIR)/soak/<timestamp>/. Not part of `make test` (root; 2 hours by default).
SOAK_MINUTES ?= 120
SOAK_ARGS ?=
soak: build kube
	scripts/setup --soak
	$(NMI_CACHE_DIR)/venv-soak/bin/python bench/soak.py --build $(BUILD_DIR) \
	  --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

# A simulated node (scripts/devenv): the real API server, the emulators, nmi intercepting with
# iptables; a pod and the host fetch tokens (KEEP=1 keeps it running; scripts/devenv down).
demo: build kube
	BUILD_DIR=$(BUILD_DIR) scripts/demo

# The same story on a real node: kubelet, containerd and the CNI bridge run the pods, nmi is
# installed by its chart from its own image (scripts/demo-node).
demo-node: build kube image
	scripts/node-images pause >/dev/null
	scripts/node-images testpod >/dev/null
	BUILD_DIR=$(BUILD_DIR) scripts/demo-node

# The container image, built with buildah from a debootstrap'd bookworm (no registry, no Docker
# engine), checked inside, saved as $(BUILD_DIR)/nmi-image.tar. Not part of `make test`; installs
# debootstrap, buildah, podman and runc itself (docs/operations.md, "Container image").
image:
	scripts/build-image --out $(BUILD_DIR)/nmi-image.tar

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TIDY_DIR) $(TSAN_DIR) $(COV_DIR) $(FUZZ_DIR)
