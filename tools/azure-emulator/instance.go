package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

const defaultInstanceJSON = `{
  "compute": {
    "azEnvironment": "AzurePublicCloud",
    "isHostCompatibilityLayerVm": "false",
    "licenseType": "",
    "location": "westeurope",
    "name": "aks-nodepool1-00000000-vmss_0",
    "offer": "",
    "osProfile": {"adminUsername": "azureuser", "computerName": "aks-nodepool1-00000000-vmss000000", "disablePasswordAuthentication": "true"},
    "osType": "Linux",
    "placementGroupId": "",
    "plan": {"name": "", "product": "", "publisher": ""},
    "platformFaultDomain": "0",
    "platformUpdateDomain": "0",
    "priority": "",
    "provider": "Microsoft.Compute",
    "publicKeys": [],
    "publisher": "",
    "resourceGroupName": "MC_nmi-test_nmi-test_westeurope",
    "resourceId": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/MC_nmi-test_nmi-test_westeurope/providers/Microsoft.Compute/virtualMachineScaleSets/aks-nodepool1-00000000-vmss/virtualMachines/0",
    "sku": "",
    "subscriptionId": "00000000-0000-0000-0000-000000000000",
    "tags": "aks-managed-poolName:nodepool1",
    "tagsList": [{"name": "aks-managed-poolName", "value": "nodepool1"}],
    "userData": "",
    "version": "",
    "vmId": "6f1e3a2b-0000-4000-8000-000000000001",
    "vmScaleSetName": "aks-nodepool1-00000000-vmss",
    "vmSize": "Standard_D2s_v3",
    "zone": ""
  },
  "network": {
    "interface": [{
      "ipv4": {"ipAddress": [{"privateIpAddress": "10.224.0.4", "publicIpAddress": ""}],
               "subnet": [{"address": "10.224.0.0", "prefix": "16"}]},
      "ipv6": {"ipAddress": []},
      "macAddress": "000D3A000001"
    }]
  }
}`

func defaultInstance() any {
	v, err := loadInstance([]byte(defaultInstanceJSON))
	if err != nil {
		panic(err)
	}
	return v
}

// loadInstance decodes an instance document and turns every primitive into a string, as the
// real IMDS does ("all primitives will be of type string"; null becomes "").
func loadInstance(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("instance: %w", err)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("instance: must be a JSON object")
	}
	return stringifyPrimitives(v), nil
}

func stringifyPrimitives(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = stringifyPrimitives(x)
		}
		return t
	case []any:
		for i, x := range t {
			t[i] = stringifyPrimitives(x)
		}
		return t
	case json.Number:
		return t.String()
	case bool:
		return strconv.FormatBool(t)
	case nil:
		return ""
	default:
		return t
	}
}

// serveInstance answers /metadata/instance[/seg...]: route filtering into objects (keys,
// exact first, then case-insensitively) and arrays (indices). Leaves need format=text.
func serveInstance(w http.ResponseWriter, r *http.Request, doc any, segs []string, format string, m *IMDS) {
	if format != "" && format != "json" && format != "text" {
		m.fail(w, r, http.StatusBadRequest, "bad_request", "Bad request. Invalid format parameter '"+format+"'")
		return
	}
	node := doc
	for _, s := range segs {
		next, ok := child(node, s)
		if !ok {
			m.notFound(w, r)
			return
		}
		node = next
	}
	leaf, isLeaf := node.(string)
	switch {
	case isLeaf && format != "text":
		m.fail(w, r, http.StatusBadRequest, "bad_request", "Bad request. Querying a leaf node requires format=text")
	case isLeaf:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(leaf))
	case format == "text":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte(strings.Join(childNames(node), "\n")))
	default:
		writeJSON(w, http.StatusOK, node)
	}
}

func child(node any, seg string) (any, bool) {
	switch t := node.(type) {
	case map[string]any:
		if v, ok := t[seg]; ok {
			return v, true
		}
		for k, v := range t {
			if strings.EqualFold(k, seg) {
				return v, true
			}
		}
	case []any:
		i, err := strconv.Atoi(seg)
		if err == nil && i >= 0 && i < len(t) {
			return t[i], true
		}
	}
	return nil, false
}

func childNames(node any) []string {
	var names []string
	switch t := node.(type) {
	case map[string]any:
		for k, v := range t {
			if _, leaf := v.(string); !leaf {
				k += "/"
			}
			names = append(names, k)
		}
		sort.Strings(names)
	case []any:
		for i, v := range t {
			n := strconv.Itoa(i)
			if _, leaf := v.(string); !leaf {
				n += "/"
			}
			names = append(names, n)
		}
	}
	return names
}
