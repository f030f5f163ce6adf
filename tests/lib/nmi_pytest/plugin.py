"""The fixtures of nmi's Python suites, in one pytest plugin. A suite's conftest.py puts tests/lib
on sys.path and says `pytest_plugins = ["nmi_pytest.plugin"]`; what is its own (identities,
constants, a lab) stays there or in its test files.

A test module (or its suite's conftest) provides:
  FILE_INDEX             its slot: port range and pod addresses (nmi_pytest/harness.py)
  emulator_identities    a module-scoped fixture returning start_emulator()'s keyword arguments
                         (user_assigned, apps, system_assigned), for `emulator`/`make_emulator`
  NAMESPACE_PREFIX       (kube and deploy) the prefix of the `ns` fixture's namespaces
"""
import os
import shutil
import tempfile

import pytest

from nmi_pytest import harness
from nmi_pytest.waits import wait_until

__all__ = ["wait_until"]


def pytest_report_header(config):
    return "azure-emulator IMDS http_stack: %s" % harness.EMULATOR_STACK


# ---------------------------------------------------------------------------------------------
# Certificates, the emulator
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pki():
    """A self-signed certificate with its key, PEM and PKCS#12 (a service principal's)."""
    d = tempfile.mkdtemp(prefix="nmi-it-pki-")
    try:
        yield harness.make_certificate(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _stop_emulator(emu):
    emu.stop()
    emu.remove_workdir()


@pytest.fixture(scope="module")
def emulator(emulator_identities):
    """The module's azure-emulator with the identities of `emulator_identities`."""
    emu = harness.start_emulator(**emulator_identities)
    try:
        yield emu
    finally:
        _stop_emulator(emu)


@pytest.fixture
def make_emulator(emulator_identities):
    """Factory for an emulator of a test's own (e.g. a short token lifetime): make_emulator(
    token_lifetime_sec=..., proxy=...)."""
    started = []

    def make(**kw):
        emu = harness.start_emulator(**dict(emulator_identities, **kw))
        started.append(emu)
        return emu

    yield make
    for emu in started:
        _stop_emulator(emu)


# ---------------------------------------------------------------------------------------------
# nmi with an identity file
# ---------------------------------------------------------------------------------------------

class NmiFactory:
    def __init__(self, file_index):
        self.file_index = file_index
        self.started = []

    def __call__(self, emulator, objects, extra_args=(), **kw):
        n = harness.Nmi(emulator, objects, self.file_index, extra_args=extra_args, **kw)
        self.started.append(n)
        return n.start()

    def stop_all(self):
        errors = []
        for n in self.started:
            try:
                n.stop(check=True)
            except Exception as e:  # noqa: BLE001 - collected and reported below
                errors.append(str(e))
            finally:
                shutil.rmtree(n.dir, ignore_errors=True)
        self.started = []
        return errors


def _file_index(request):
    return getattr(request.module, "FILE_INDEX")


def _nmi_factory(request):
    f = NmiFactory(_file_index(request))
    yield f
    errors = f.stop_all()
    assert not errors, "\n".join(errors)


@pytest.fixture
def make_nmi(request):
    """Factory: make_nmi(emulator, objects, extra_args) starts an nmi that is stopped (and must
    exit 0) when the test ends."""
    yield from _nmi_factory(request)


@pytest.fixture(scope="module")
def make_module_nmi(request):
    """Like make_nmi, for module-scoped instances."""
    yield from _nmi_factory(request)


@pytest.fixture(scope="module")
def ips(request):
    """Pod addresses of the module's slot."""
    return harness.PodIps(_file_index(request))


@pytest.fixture
def netns():
    """A network namespace of the test's own (harness.NetNs)."""
    n = harness.NetNs()
    try:
        yield n
    finally:
        n.close()


# ---------------------------------------------------------------------------------------------
# The Kubernetes test environment (ctest's kube_api fixture: KUBE_TESTENV_DIR)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir():
    """A directory for the module's files (kubeconfigs, tokens), removed at its end."""
    d = tempfile.mkdtemp(prefix="nmi-%d-" % os.getpid())
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def api(workdir):
    """The shared API server as its admin (nmi_pytest.kube.KubeApi)."""
    from nmi_pytest import kube
    return kube.KubeApi(kube.shared_kubeconfig(), workdir)


@pytest.fixture
def ns(request):
    """A namespace of the test's own (namespaces are never deleted in the test environment)."""
    from nmi_pytest import kube
    tag = request.node.name
    tag = tag[5:] if tag.startswith("test_") else tag
    return kube.new_namespace(kube.unique_name(getattr(request.module, "NAMESPACE_PREFIX"),
                                               tag.lower()[:24]))


# ---------------------------------------------------------------------------------------------
# Prerequisites of the suites that build namespaces or nodes
# ---------------------------------------------------------------------------------------------

def require(what, programs=(), env_files=(), files=()):
    """Fails the test (not skips: make test provides all of it) unless this runs as root, every
    program of `programs` is installed, every environment variable of `env_files` names an
    existing file and every path of `files` exists."""
    if os.geteuid() != 0:
        pytest.fail("%s need root (make test runs as root)" % what)
    missing = [p for p in programs
               if shutil.which(p) is None and not os.path.exists("/usr/sbin/" + p)]
    if missing:
        pytest.fail("missing programs (scripts/setup installs them): %s" % " ".join(missing))
    for var in env_files:
        if not os.path.exists(os.environ.get(var, "")):
            pytest.fail("%s is not set to an existing file" % var)
    for path in files:
        if not os.path.exists(path):
            pytest.fail("missing %s (set NMI_BINARY / NMI_EMULATOR)" % path)
