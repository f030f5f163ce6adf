"""The integration suite: the shared plugin (tests/lib/nmi_pytest) and the identities of the
emulated VM. The emulator's IMDS listener has the HTTP stack named by NMI_EMULATOR_STACK ("go" by
default, "windows": behaves like http.sys); ctest runs the hostile suites once with each."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))

from nmi_pytest import harness  # noqa: E402
from nmi_pytest.harness import azure_identity, client_id_for  # noqa: E402

pytest_plugins = ["nmi_pytest.plugin"]

# User-assigned identities the emulated VM has, by short name.
UA_NAMES = ["a", "b", "c", "d", "e", "f", "g", "h", "exc", "node"]
SUB = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-it"


def ua_client_id(name):
    return client_id_for("ua-" + name)


def ua_resource_id(name):
    return SUB + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-" + name


def ident(short, ns="default", namespaced=False, client_id=None, name=None):
    """The AzureIdentity id-<short> of the VM's user-assigned identity <short>."""
    return azure_identity(name or "id-" + short, ns, client_id or ua_client_id(short),
                          resource_id=ua_resource_id(short), namespaced=namespaced)


SP_SECRET_ID = client_id_for("sp-secret")
SP_SECRET = "s3cret-value~with.odd_chars"
SP_CERT_ID = client_id_for("sp-cert")
ADFS_ID = client_id_for("adfs-app")
ADFS_SECRET = "adfs-s3cret"
SYSTEM_ID = client_id_for("system-assigned")
# Not on the VM: IMDS answers 400 Identity not found.
NOT_ON_VM_ID = client_id_for("not-on-vm")


@pytest.fixture(scope="module")
def emulator_identities(pki):
    return {
        "user_assigned": [{"client_id": ua_client_id(n), "resource_id": ua_resource_id(n)}
                          for n in UA_NAMES],
        "apps": [
            {"tenant_id": harness.TENANT, "client_id": SP_SECRET_ID, "secret": SP_SECRET},
            {"tenant_id": harness.TENANT, "client_id": SP_CERT_ID,
             "certificate_pem": pki["cert_pem"]},
            {"tenant_id": "adfs", "client_id": ADFS_ID, "secret": ADFS_SECRET},
        ],
        "system_assigned": {"client_id": SYSTEM_ID},
    }
