"""Fixtures of nmi's integration tests: the emulator, certificates, nmi instances.

The emulator's IMDS listener has the HTTP stack named by NMI_EMULATOR_STACK ("go" by default,
"windows": behaves like http.sys); ctest runs the hostile suites once with each."""
import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
from harness import Nmi, client_id_for  # noqa: E402

# User-assigned identities the emulated VM has, by short name.
UA_NAMES = ["a", "b", "c", "d", "e", "f", "g", "h", "exc", "node"]
SUB = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-it"


def ua_client_id(name):
    return client_id_for("ua-" + name)


def ua_resource_id(name):
    return SUB + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-" + name


SP_SECRET_ID = client_id_for("sp-secret")
SP_SECRET = "s3cret-value~with.odd_chars"
SP_CERT_ID = client_id_for("sp-cert")
ADFS_ID = client_id_for("adfs-app")
ADFS_SECRET = "adfs-s3cret"
SYSTEM_ID = client_id_for("system-assigned")
# Not on the VM: IMDS answers 400 Identity not found.
NOT_ON_VM_ID = client_id_for("not-on-vm")


def pytest_report_header(config):
    return "azure-emulator IMDS http_stack: %s" % harness.EMULATOR_STACK


@pytest.fixture(scope="session")
def pki():
    d = tempfile.mkdtemp(prefix="nmi-it-pki-")
    try:
        yield harness.make_certificate(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _emulator_config(pki, token_lifetime_sec=86400):
    ua = [{"client_id": ua_client_id(n), "resource_id": ua_resource_id(n)} for n in UA_NAMES]
    apps = [
        {"tenant_id": harness.TENANT, "client_id": SP_SECRET_ID, "secret": SP_SECRET},
        {"tenant_id": harness.TENANT, "client_id": SP_CERT_ID, "certificate_pem": pki["cert_pem"]},
        {"tenant_id": "adfs", "client_id": ADFS_ID, "secret": ADFS_SECRET},
    ]
    return ua, apps


@pytest.fixture(scope="module")
def emulator(pki):
    ua, apps = _emulator_config(pki)
    emu = harness.start_emulator(ua, apps, system_assigned={"client_id": SYSTEM_ID},
                                 http_stack=harness.EMULATOR_STACK)
    try:
        yield emu
    finally:
        emu.stop()
        emu.remove_workdir()


@pytest.fixture
def make_emulator(pki):
    """Factory for an emulator of a test's own (e.g. a short token lifetime)."""
    started = []

    def make(token_lifetime_sec=86400, proxy=True):
        ua, apps = _emulator_config(pki)
        emu = harness.start_emulator(ua, apps, token_lifetime_sec=token_lifetime_sec, proxy=proxy,
                                     system_assigned={"client_id": SYSTEM_ID},
                                     http_stack=harness.EMULATOR_STACK)
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()
        emu.remove_workdir()


class NmiFactory:
    def __init__(self, file_index):
        self.file_index = file_index
        self.started = []

    def __call__(self, emulator, objects, extra_args=(), **kw):
        n = Nmi(emulator, objects, self.file_index, extra_args=extra_args, **kw)
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


@pytest.fixture
def make_nmi(request):
    """Factory: make_nmi(emulator, objects, extra_args) starts an nmi that is stopped (and must
    exit 0) when the test ends."""
    f = NmiFactory(_file_index(request))
    yield f
    errors = f.stop_all()
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="module")
def make_module_nmi(request):
    """Like make_nmi, for module-scoped instances."""
    f = NmiFactory(_file_index(request))
    yield f
    errors = f.stop_all()
    assert not errors, "\n".join(errors)


@pytest.fixture(scope="module")
def ips(request):
    return harness.PodIps(_file_index(request))
