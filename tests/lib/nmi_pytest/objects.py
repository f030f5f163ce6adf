"""Builders of the objects nmi reads: Pods, Secrets and aad-pod-identity's kinds, in the shapes
users apply them and MIC writes them. The same dicts go into an identity file (tests/integration,
tests/netns) or to the API server (tests/kube, tests/deploy, tests/lib/devenv.py)."""
import base64
import uuid

API = "aadpodidentity.k8s.io/v1"
NODE = "node-1"


def pod(name, ns, ip, labels=None, phase="Running", node=NODE, uid=None, host_network=False):
    """A pod as nmi sees it: scheduled on `node`, with its status (phase, podIP, podIPs)."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": uid or str(uuid.uuid4()),
                     "labels": dict(labels or {})},
        "spec": {"nodeName": node, "hostNetwork": host_network},
        "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def api_pod(name, ns, node, labels=None):
    """A pod to POST to the API server (bound to `node`, no status: pod_status() patches it)."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels or {})},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app"}]}}


def pod_status(ip, phase="Running"):
    """The merge patch of the status subresource a kubelet would write."""
    return {"status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]}}


def secret(name, ns, data=None, string_data=None):
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}}
    if data is not None:
        obj["data"] = {k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode()
                       for k, v in data.items()}
    if string_data is not None:
        obj["stringData"] = dict(string_data)
    return obj


def azure_identity(name, ns, client_id="", type=0, resource_id="", tenant_id="", ad_endpoint="",
                   secret_ref=None, namespaced=False):
    """secret_ref: (namespace, name) of the Secret holding a service principal's clientSecret."""
    spec = {"type": type, "clientID": client_id}
    if resource_id:
        spec["resourceID"] = resource_id
    if tenant_id:
        spec["tenantID"] = tenant_id
    if ad_endpoint:
        spec["adEndpoint"] = ad_endpoint
    if secret_ref:
        spec["clientPassword"] = {"name": secret_ref[1], "namespace": secret_ref[0]}
    meta = {"name": name, "namespace": ns}
    if namespaced:
        meta["annotations"] = {"aadpodidentity.k8s.io/Behavior": "namespaced"}
    return {"apiVersion": API, "kind": "AzureIdentity", "metadata": meta, "spec": spec}


def binding(name, ns, identity_name, selector=None):
    spec = {"azureIdentity": identity_name}
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": API, "kind": "AzureIdentityBinding",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def assigned(pod_obj, identity_obj, status="Assigned", name=None, binding_obj=None, node=NODE,
             replicas=None, namespace=None):
    """An AzureAssignedIdentity of identity_obj to pod_obj (a pod, or just its
    {"name", "namespace"}), in `namespace` (default: the identity's, as MIC creates them), with
    status.status = status (None: no status). With `replicas`, spec.replicas and
    status.availableReplicas as MIC writes them to the API server."""
    pm = pod_obj.get("metadata", pod_obj)
    im = identity_obj["metadata"]
    spec = {"azureIdentityRef": identity_obj, "pod": pm["name"], "podNamespace": pm["namespace"],
            "nodename": node}
    if binding_obj is not None:
        spec["azureBindingRef"] = binding_obj
    if replicas is not None:
        spec["replicas"] = replicas
    obj = {"apiVersion": API, "kind": "AzureAssignedIdentity",
           "metadata": {"name": name or "%s-%s-%s" % (pm["name"], pm["namespace"], im["name"]),
                        "namespace": namespace or im["namespace"], "labels": {"nodename": node}},
           "spec": spec}
    if status is not None:
        obj["status"] = {"status": status}
        if replicas is not None:
            obj["status"]["availableReplicas"] = replicas
    return obj


def exception(name, ns, pod_labels):
    return {"apiVersion": API, "kind": "AzurePodIdentityException",
            "metadata": {"name": name, "namespace": ns}, "spec": {"podLabels": dict(pod_labels)}}
