package main

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// aadApp is a registered application with its parsed credential.
type aadApp struct {
	AppConfig
	cert     *x509.Certificate
	sha1     []byte
	sha256   []byte
	objectID string
}

func loadApps(cfgs []AppConfig) ([]*aadApp, error) {
	apps := make([]*aadApp, 0, len(cfgs))
	for i, c := range cfgs {
		if c.TenantID == "" || c.ClientID == "" || (c.Secret == "" && c.CertificatePEM == "") {
			return nil, fmt.Errorf("apps[%d]: tenant_id, client_id and a secret or certificate_pem are required", i)
		}
		a := &aadApp{AppConfig: c, objectID: c.ObjectID}
		if a.objectID == "" {
			a.objectID = stableGUID("service_principal", c.ClientID)
		}
		if c.CertificatePEM != "" {
			cert, err := readCertificate(c.CertificatePEM)
			if err != nil {
				return nil, fmt.Errorf("apps[%d]: %w", i, err)
			}
			s1, s256 := sha1.Sum(cert.Raw), sha256.Sum256(cert.Raw)
			a.cert, a.sha1, a.sha256 = cert, s1[:], s256[:]
		}
		apps = append(apps, a)
	}
	return apps, nil
}

// readCertificate reads the first CERTIFICATE block of a PEM file (or of inline PEM text).
func readCertificate(src string) (*x509.Certificate, error) {
	data := []byte(src)
	if !strings.Contains(src, "-----BEGIN") {
		var err error
		if data, err = os.ReadFile(src); err != nil {
			return nil, err
		}
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("no CERTIFICATE block in %q", src)
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// AAD is the fake Azure AD (and ADFS) token service.
type AAD struct {
	tenantID string
	lifetime int64
	signer   *Signer
	faults   *Faults
	quit     <-chan struct{}
	now      func() time.Time

	mu   sync.RWMutex
	apps []*aadApp
}

func newAAD(c *Config, signer *Signer, faults *Faults, quit <-chan struct{}) (*AAD, error) {
	a := &AAD{tenantID: c.TenantID, lifetime: c.TokenLifetimeSec, signer: signer, faults: faults,
		quit: quit, now: time.Now}
	if c.AAD != nil {
		if err := a.SetApps(c.AAD.Apps); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// SetApps replaces the registered applications (POST /config/aad).
func (a *AAD) SetApps(cfgs []AppConfig) error {
	apps, err := loadApps(cfgs)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.apps = apps
	a.mu.Unlock()
	return nil
}

func (a *AAD) knownTenant(tenant string) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, app := range a.apps {
		if strings.EqualFold(app.TenantID, tenant) {
			return true
		}
	}
	return strings.EqualFold(tenant, a.tenantID)
}

func (a *AAD) findApp(tenant, clientID string) *aadApp {
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, app := range a.apps {
		if strings.EqualFold(app.TenantID, tenant) && strings.EqualFold(app.ClientID, clientID) {
			return app
		}
	}
	return nil
}

type flavor int

const (
	flavorV1 flavor = iota
	flavorV2
	flavorADFS
)

func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (a *AAD) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rawPath, _ := splitTarget(r.RequestURI)
	segs := pathSegments(normalizePath(rawPath))
	lower := strings.ToLower(strings.Join(segs, "/"))
	tenant := ""
	if len(segs) > 0 {
		tenant = segs[0]
	}
	rest := strings.TrimPrefix(lower, strings.ToLower(tenant)+"/")
	isADFS := strings.EqualFold(tenant, "adfs")
	route := func(name string) {
		annotate(r, func(e *LogEntry) { e.Route, e.Tenant = name, tenant })
	}
	switch {
	case lower == "discovery/keys" || (len(segs) >= 2 && (rest == "discovery/keys" || rest == "discovery/v2.0/keys")):
		route("jwks")
		a.get(w, r, func() { writeJSON(w, http.StatusOK, a.signer.JWKS()) })
	case lower == "common/discovery/instance":
		route("instance_discovery")
		a.get(w, r, func() { a.instanceDiscovery(w, r) })
	case len(segs) == 3 && rest == "oauth2/token":
		fl := flavorV1
		if isADFS {
			fl = flavorADFS
		}
		route(map[flavor]string{flavorV1: "token_v1", flavorADFS: "token_adfs"}[fl])
		a.token(w, r, tenant, fl)
	case len(segs) == 4 && rest == "oauth2/v2.0/token" && !isADFS:
		route("token_v2")
		a.token(w, r, tenant, flavorV2)
	case len(segs) == 3 && rest == ".well-known/openid-configuration":
		route("openid_configuration")
		a.get(w, r, func() { a.openIDConfig(w, r, tenant, isADFS) })
	case len(segs) == 4 && rest == "v2.0/.well-known/openid-configuration" && !isADFS:
		route("openid_configuration_v2")
		a.get(w, r, func() { a.openIDConfigV2(w, r, tenant) })
	default:
		route("not_found")
		annotate(r, func(e *LogEntry) { e.Error = "not found" })
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found",
			"error_description": "The requested path does not exist on this emulated Azure AD"})
	}
}

// get runs f for GET (and HEAD) requests and answers 405 otherwise.
func (a *AAD) get(w http.ResponseWriter, r *http.Request, f func()) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		annotate(r, func(e *LogEntry) { e.Error = "method not allowed" })
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method_not_allowed"})
		return
	}
	w.Header().Set("Cache-Control", "max-age=86400, private")
	f()
}

func (a *AAD) openIDConfig(w http.ResponseWriter, r *http.Request, tenant string, adfs bool) {
	base := baseURL(r)
	doc := map[string]any{
		"token_endpoint":                        base + "/" + tenant + "/oauth2/token",
		"authorization_endpoint":                base + "/" + tenant + "/oauth2/authorize",
		"jwks_uri":                              base + "/" + tenant + "/discovery/keys",
		"issuer":                                "https://sts.windows.net/" + tenant + "/",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "token id_token", "token"},
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      []string{"openid"},
		"grant_types_supported":                 []string{"client_credentials"},
		"tenant_region_scope":                   "EU",
		"cloud_instance_name":                   "microsoftonline.com",
	}
	if adfs {
		doc["issuer"] = base + "/adfs"
		doc["access_token_issuer"] = base + "/adfs"
		delete(doc, "tenant_region_scope")
		delete(doc, "cloud_instance_name")
	}
	writeJSON(w, http.StatusOK, doc)
}

func (a *AAD) openIDConfigV2(w http.ResponseWriter, r *http.Request, tenant string) {
	base := baseURL(r)
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/" + tenant + "/oauth2/v2.0/token",
		"authorization_endpoint":                base + "/" + tenant + "/oauth2/v2.0/authorize",
		"jwks_uri":                              base + "/" + tenant + "/discovery/v2.0/keys",
		"issuer":                                "https://login.microsoftonline.com/" + tenant + "/v2.0",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"grant_types_supported":                 []string{"client_credentials"},
		"tenant_region_scope":                   "EU",
		"cloud_instance_name":                   "microsoftonline.com",
	})
}

// instanceDiscovery answers MSAL's /common/discovery/instance with this host as the only alias.
func (a *AAD) instanceDiscovery(w http.ResponseWriter, r *http.Request) {
	tenant := "common"
	if u, err := url.Parse(r.URL.Query().Get("authorization_endpoint")); err == nil {
		if segs := pathSegments(u.Path); len(segs) > 0 {
			tenant = segs[0]
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": baseURL(r) + "/" + tenant + "/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata": []map[string]any{{
			"preferred_network": r.Host, "preferred_cache": r.Host, "aliases": []string{r.Host},
		}},
	})
}
