package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

const imdsServerHeader = "IMDS/150.870.65.1234"

// imdsAPIVersions are the versions the real IMDS lists (instance-metadata-service.md).
var imdsAPIVersions = []string{
	"2017-03-01", "2017-04-02", "2017-08-01", "2017-10-01", "2017-12-01", "2018-02-01",
	"2018-04-02", "2018-10-01", "2019-02-01", "2019-03-11", "2019-04-30", "2019-06-01",
	"2019-06-04", "2019-08-01", "2019-08-15", "2019-11-01", "2020-06-01", "2020-07-15",
	"2020-09-01", "2020-10-01", "2020-12-01", "2021-01-01", "2021-02-01", "2021-03-01",
	"2021-05-01", "2021-08-01", "2021-10-01", "2021-11-01", "2021-11-15", "2021-12-13",
	"2023-07-01", "2023-11-15", "2024-03-15", "2024-07-17", "2025-04-07",
}

// identityMinVersion is the version that introduced /metadata/identity.
const identityMinVersion = "2018-02-01"

const (
	routeToken    = "/metadata/identity/oauth2/token"
	routeInfo     = "/metadata/identity/info"
	routeVersions = "/metadata/versions"
	routeInstance = "/metadata/instance"
	// IMDSv2 (MSAL.NET's mTLS proof-of-possession flow): the node's own credential material.
	// Nothing in front of IMDS should ever let a pod reach them, so the emulator answers them
	// with a body that says so loudly (see nodeCredential).
	routePlatformMetadata = "/metadata/identity/getplatformmetadata"
	routeIssueCredential  = "/metadata/identity/issuecredential"
)

// IMDS is the fake Instance Metadata Service.
type IMDS struct {
	tenantID string
	lifetime int64
	signer   *Signer
	faults   *Faults
	quit     <-chan struct{}
	now      func() time.Time
	throttle Throttle

	mu       sync.RWMutex
	system   *Identity
	users    []Identity
	instance any
}

func newIMDS(c *Config, signer *Signer, faults *Faults, quit <-chan struct{}) (*IMDS, error) {
	m := &IMDS{tenantID: c.TenantID, lifetime: c.TokenLifetimeSec, signer: signer, faults: faults,
		quit: quit, now: time.Now}
	m.throttle.maxConcurrent, m.throttle.maxRPS = defaultMaxConcurrent, defaultMaxRPS
	m.instance = defaultInstance()
	if err := m.Update(c.IMDS, true); err != nil {
		return nil, err
	}
	return m, nil
}

// Update replaces the parts of the configuration given in u (POST /config/imds): the identities
// (when identities is true), the instance document and the throttling limits (when given).
func (m *IMDS) Update(u *IMDSConfig, identities bool) error {
	if u == nil {
		return nil
	}
	if err := normalizeIdentities(u); err != nil {
		return err
	}
	var inst any
	if len(u.Instance) > 0 {
		var err error
		if inst, err = loadInstance(u.Instance); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if identities {
		m.system = u.SystemAssigned
		m.users = append([]Identity(nil), u.UserAssigned...)
	}
	if inst != nil {
		m.instance = inst
	}
	m.throttle.Set(u.MaxConcurrent, u.MaxRPS)
	return nil
}

type imdsError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func (m *IMDS) fail(w http.ResponseWriter, r *http.Request, status int, code, desc string) {
	annotate(r, func(e *LogEntry) { e.Error = code + ": " + desc })
	writeJSON(w, status, imdsError{code, desc})
}

func (m *IMDS) failAPIVersion(w http.ResponseWriter, r *http.Request) {
	const msg = "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds"
	annotate(r, func(e *LogEntry) { e.Error = "api-version invalid or missing" })
	n := len(imdsAPIVersions)
	writeJSON(w, http.StatusBadRequest, map[string]any{
		"error":           msg,
		"newest-versions": []string{imdsAPIVersions[n-1], imdsAPIVersions[n-2], imdsAPIVersions[n-3]},
	})
}

func (m *IMDS) faultBody(status int) []byte {
	code := "server_error"
	switch {
	case status == 400:
		code = "bad_request"
	case status == 403:
		code = "forbidden"
	case status == 404:
		code = "not_found"
	case status == 405:
		code = "method_not_allowed"
	case status == 429:
		code = "too_many_requests"
	case status == 410 || status == 503:
		code = "service_unavailable"
	}
	return marshalJSON(imdsError{code, fmt.Sprintf("Injected fault: HTTP %d %s", status, http.StatusText(status))})
}

func (m *IMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Server", imdsServerHeader)
	_, rawQuery := splitTarget(r.RequestURI)
	p := requestPath(r)
	lp := strings.ToLower(p)
	if lp != "/metadata" && !strings.HasPrefix(lp, "/metadata/") {
		annotate(r, func(e *LogEntry) { e.Route = "not_found" })
		m.notFound(w, r)
		return
	}
	isToken := lp == routeToken
	if isToken {
		annotate(r, func(e *LogEntry) { e.Route = "token" })
		release, reason := m.throttle.Acquire(m.now())
		if release == nil {
			w.Header().Set("Retry-After", "1")
			m.fail(w, r, http.StatusTooManyRequests, "too_many_requests", "Too many requests: "+reason)
			return
		}
		defer release()
		if f := m.faults.Next("imds", m.now()); f != nil && f.apply(w, r, m.quit, m.faultBody) {
			return
		}
	}
	if md := r.Header.Values("Metadata"); len(md) != 1 || md[0] != "true" {
		m.fail(w, r, http.StatusBadRequest, "invalid_request", "Required metadata header not specified")
		return
	}
	if _, ok := r.Header["X-Forwarded-For"]; ok {
		m.fail(w, r, http.StatusBadRequest, "invalid_request",
			"Requests with an X-Forwarded-For header are not allowed")
		return
	}
	allowed := http.MethodGet
	if lp == routeIssueCredential {
		allowed = http.MethodPost
	}
	if requestMethod(r) != allowed {
		w.Header().Set("Allow", allowed)
		m.fail(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "The request method is not allowed")
		return
	}
	pairs, err := parseQuery(rawQuery)
	if err != nil {
		m.fail(w, r, http.StatusBadRequest, "invalid_request", "Malformed query string")
		return
	}
	if d := firstDuplicate(pairs); d != "" {
		m.fail(w, r, http.StatusBadRequest, "invalid_request", "Duplicate query parameter '"+d+"'")
		return
	}
	q := queryMap(pairs)
	switch {
	case isToken:
		m.token(w, r, q)
	case lp == routeInfo:
		annotate(r, func(e *LogEntry) { e.Route = "identity_info" })
		if !validAPIVersion(q, identityMinVersion) {
			m.failAPIVersion(w, r)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"tenantId": m.tenantID})
	case lp == routePlatformMetadata || lp == routeIssueCredential:
		m.nodeCredential(w, r, lp)
	case lp == routeVersions:
		annotate(r, func(e *LogEntry) { e.Route = "versions" })
		writeJSON(w, http.StatusOK, map[string]any{"apiVersions": imdsAPIVersions})
	case lp == routeInstance || strings.HasPrefix(lp, routeInstance+"/"):
		annotate(r, func(e *LogEntry) { e.Route = "instance" })
		if !validAPIVersion(q, "") {
			m.failAPIVersion(w, r)
			return
		}
		m.mu.RLock()
		inst := m.instance
		m.mu.RUnlock()
		serveInstance(w, r, inst, pathSegments(p)[2:], first(q, "format"), m)
	default:
		annotate(r, func(e *LogEntry) { e.Route = "not_found" })
		m.notFound(w, r)
	}
}

// nodeCredential answers the IMDSv2 credential routes. The body is not what IMDS sends; it is
// marked so that a test seeing it knows node credentials reached whoever asked (these routes
// must never be reachable from a pod). No api-version is required, so any spelling that gets
// through shows up.
func (m *IMDS) nodeCredential(w http.ResponseWriter, r *http.Request, route string) {
	name := strings.TrimPrefix(route, "/metadata/identity/")
	annotate(r, func(e *LogEntry) {
		if name == "getplatformmetadata" {
			e.Route = "platform_metadata"
		} else {
			e.Route = "issue_credential"
		}
	})
	writeJSON(w, http.StatusOK, map[string]string{
		"node_credential": "LEAKED-NODE-CREDENTIAL-" + name,
		"warning":         "IMDSv2 node credential material: a pod must never receive this",
	})
}

func (m *IMDS) notFound(w http.ResponseWriter, r *http.Request) {
	annotate(r, func(e *LogEntry) { e.Error = "not found" })
	writeJSON(w, http.StatusNotFound, map[string]string{"error": "Not found"})
}

func first(q map[string][]string, name string) string {
	if v := q[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func validAPIVersion(q map[string][]string, min string) bool {
	v := first(q, "api-version")
	if v == "" || v < min {
		return false
	}
	for _, known := range imdsAPIVersions {
		if v == known {
			return true
		}
	}
	return false
}

// selectIdentity applies IMDS's rules; it returns the identity or an error description.
func (m *IMDS) selectIdentity(q map[string][]string) (*Identity, string) {
	type sel struct{ name, value string }
	var given []sel
	for _, name := range []string{"client_id", "object_id", "msi_res_id", "mi_res_id"} {
		if v := first(q, name); v != "" {
			given = append(given, sel{name, v})
		}
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	all := m.users
	if m.system != nil {
		all = append([]Identity{*m.system}, m.users...)
	}
	switch len(given) {
	case 0:
		if m.system != nil {
			id := *m.system
			return &id, ""
		}
		if len(m.users) == 1 {
			id := m.users[0]
			return &id, ""
		}
		if len(m.users) == 0 {
			return nil, "Identity not found"
		}
		return nil, "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request"
	case 1:
	default:
		return nil, "Only one of client_id, object_id and msi_res_id may be specified"
	}
	s := given[0]
	for _, id := range all {
		var have string
		switch s.name {
		case "client_id":
			have = id.ClientID
		case "object_id":
			have = id.ObjectID
		default:
			have = id.ResourceID
		}
		if have != "" && strings.EqualFold(have, s.value) {
			id := id
			return &id, ""
		}
	}
	return nil, "Identity not found"
}

type imdsToken struct {
	AccessToken  string `json:"access_token"`
	ClientID     string `json:"client_id"`
	ExpiresIn    string `json:"expires_in"`
	ExpiresOn    string `json:"expires_on"`
	ExtExpiresIn string `json:"ext_expires_in"`
	NotBefore    string `json:"not_before"`
	Resource     string `json:"resource"`
	TokenType    string `json:"token_type"`
}

func (m *IMDS) token(w http.ResponseWriter, r *http.Request, q map[string][]string) {
	if !validAPIVersion(q, identityMinVersion) {
		m.failAPIVersion(w, r)
		return
	}
	resource := first(q, "resource")
	if resource == "" {
		m.fail(w, r, http.StatusBadRequest, "invalid_request", "Required query variable 'resource' is missing")
		return
	}
	id, problem := m.selectIdentity(q)
	if id == nil {
		m.fail(w, r, http.StatusBadRequest, "invalid_request", problem)
		return
	}
	now := m.now()
	iat := now.Unix() - 300 // Azure AD back-dates iat/nbf by five minutes
	exp := now.Unix() + m.lifetime
	claims := map[string]any{
		"aud": resource, "iss": "https://sts.windows.net/" + m.tenantID + "/",
		"iat": iat, "nbf": iat, "exp": exp,
		"aio": "emulated", "appid": id.ClientID, "appidacr": "2",
		"idp": "https://sts.windows.net/" + m.tenantID + "/", "idtyp": "app",
		"oid": id.ObjectID, "sub": id.ObjectID, "tid": m.tenantID,
		"uti": newGUID(), "ver": "1.0",
	}
	if id.ResourceID != "" {
		claims["xms_mirid"] = id.ResourceID
	}
	lifetime := strconv.FormatInt(m.lifetime, 10)
	annotate(r, func(e *LogEntry) { e.ClientID = id.ClientID })
	writeJSON(w, http.StatusOK, imdsToken{
		AccessToken:  m.signer.Sign(claims),
		ClientID:     id.ClientID,
		ExpiresIn:    lifetime,
		ExpiresOn:    strconv.FormatInt(exp, 10),
		ExtExpiresIn: lifetime,
		NotBefore:    strconv.FormatInt(iat, 10),
		Resource:     resource,
		TokenType:    "Bearer",
	})
}
