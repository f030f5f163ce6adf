"""nmi's shared pytest plugin and test library (docs/testing.md, "Where the fixtures live").

  waits    wait_until(): every wait of every suite is a wait for a condition
  objects  builders of Pods, Secrets and aad-pod-identity objects (identity file and API server)
  harness  the real nmi and azure-emulator processes, ports and pod addresses, raw HTTP clients
  kube     the Kubernetes test environment: API client, kubectl/helm, namespaces, RBAC, relay,
           nmi with the Kubernetes identity source (KubeNmi, start_nmi)
  plugin   the fixtures; a suite's conftest.py loads it with
               pytest_plugins = ["nmi_pytest.plugin"]
           after putting tests/lib on sys.path

Nothing but plugin imports pytest, so scripts (scripts/devenv, bench/) can use the rest.
"""
