# nmi's container image: a build stage that compiles build/bin/nmi (release, g++, CMake/Ninja) and a
# runtime stage holding only what nmi needs when it runs on a node:
#   - /usr/local/bin/nmi and the Debian packages of its shared libraries (`ldd build/bin/nmi`):
#     libssl3 (which also carries OpenSSL's legacy provider, ossl-modules/legacy.so, that nmi loads
#     for PKCS#12 certificates written with RC2-40), libspdlog1.10, libfmt9, libyaml-cpp0.7,
#     libprometheus-cpp-core1.0, libstdc++6, libgcc-s1 (Boost, CLI11 and nlohmann-json are
#     header-only);
#   - iptables with both backends: the `iptables` package installs iptables-nft(-save/-restore) and
#     iptables-legacy(-save/-restore). nmi calls the backend's programs by name and chooses the
#     node's backend itself (--iptables-backend=auto, as Kubernetes' iptables-wrapper decides), so no
#     wrapper script or update-alternatives selection is needed;
#   - conntrack (nmi deletes conntrack entries to the metadata IP after its first sync);
#   - ca-certificates (HTTPS to Azure AD and to the API server's public endpoints).
#
# No registry is reachable where nmi is developed: `make image` (scripts/build-image) builds this file
# with buildah from a debootstrap'd bookworm imported as localhost/bookworm-base. Elsewhere,
# `docker build .` or `buildah bud .` with the default base image works as well.
#
# The image runs as root (USER 0): the DaemonSet grants only NET_ADMIN and NET_RAW, not privileged,
# with a read-only root filesystem.

ARG BASE_IMAGE=debian:bookworm-slim

# ------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS build
ARG JOBS=2
ARG DEBIAN_FRONTEND=noninteractive
# The build dependencies of scripts/setup's list that building the nmi target needs. GoogleTest and
# Python are required by the top-level CMakeLists.txt at configure time, not by nmi itself.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      g++ cmake ninja-build ccache pkg-config \
      libboost1.74-dev libssl-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev \
      prometheus-cpp-dev libyaml-cpp-dev libgtest-dev libgmock-dev python3-minimal \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Only the nmi target is built: no tests, no emulator (Go is not needed, hence GO_EXECUTABLE).
# ccache's directory is a build cache mount (BuildKit and buildah both support it), so a rebuild
# after a small change recompiles little.
RUN --mount=type=cache,target=/root/.cache/ccache \
    CCACHE_DIR=/root/.cache/ccache cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_CXX_COMPILER=g++ -DNMI_KUBE_TESTS=OFF -DNMI_TOOL_TESTS=OFF -DGO_EXECUTABLE=/bin/false \
      -DPython3_EXECUTABLE=/usr/bin/python3 \
 && CCACHE_DIR=/root/.cache/ccache cmake --build build -j "${JOBS}" --target nmi \
 && strip --strip-unneeded -o /nmi build/bin/nmi \
 && /nmi --version

# ------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE}
ARG NMI_VERSION=dev
ARG DEBIAN_FRONTEND=noninteractive
LABEL org.opencontainers.image.title="nmi" \
      org.opencontainers.image.description="Node Managed Identity: answers pods' Azure IMDS token requests (successor of aad-pod-identity's NMI)" \
      org.opencontainers.image.version="${NMI_VERSION}"
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates iptables conntrack \
      libssl3 libspdlog1.10 libfmt9 libyaml-cpp0.7 libprometheus-cpp-core1.0 libstdc++6 libgcc-s1 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log
COPY --from=build /nmi /usr/local/bin/nmi
# Fail the build if a shared library is missing or a tool nmi runs is absent.
RUN ! ldd /usr/local/bin/nmi | grep -q 'not found' \
 && test -f "/usr/lib/$(uname -m)-linux-gnu/ossl-modules/legacy.so" \
 && for t in iptables-nft-save iptables-nft-restore iptables-legacy-save iptables-legacy-restore \
             conntrack; do command -v "$t" >/dev/null || { echo "missing $t" >&2; exit 1; }; done \
 && /usr/local/bin/nmi --version
USER 0
ENTRYPOINT ["/usr/local/bin/nmi"]
