"""The kube suite: the shared plugin (tests/lib/nmi_pytest). Each file has its own identities
(its emulator_identities fixture), FILE_INDEX and NAMESPACE_PREFIX."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))

pytest_plugins = ["nmi_pytest.plugin"]
