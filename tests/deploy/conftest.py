"""The deploy suite: the shared plugin (tests/lib/nmi_pytest). Each file has its own FILE_INDEX
and NAMESPACE_PREFIX; test_chart.py its identities (emulator_identities)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))

pytest_plugins = ["nmi_pytest.plugin"]
