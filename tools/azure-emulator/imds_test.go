package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

const tokenQ = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net"

func TestIMDSTokenSuccess(t *testing.T) {
	f := newIMDSFixture(t, defaultIMDSConfig())
	before := time.Now().Unix()
	resp, body := rawGet(t, f.srv, tokenQ+"&client_id="+ua1Client, "Metadata: true")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if s := resp.Header.Get("Server"); s != "IMDS/150.870.65.1234" {
		t.Errorf("Server %q", s)
	}
	m := decodeMap(t, body)
	var keys []string
	for k, v := range m {
		keys = append(keys, k)
		if _, ok := v.(string); !ok {
			t.Errorf("field %s is not a string: %#v", k, v)
		}
	}
	sort.Strings(keys)
	want := "access_token,client_id,expires_in,expires_on,ext_expires_in,not_before,resource,token_type"
	if strings.Join(keys, ",") != want {
		t.Fatalf("fields %v", keys)
	}
	if m["resource"] != "https://vault.azure.net" || m["client_id"] != ua1Client || m["token_type"] != "Bearer" ||
		m["expires_in"] != "86400" {
		t.Fatalf("body %v", m)
	}
	expOn, _ := strconv.ParseInt(m["expires_on"].(string), 10, 64)
	if expOn < before+86400 || expOn > time.Now().Unix()+86400 {
		t.Fatalf("expires_on %d", expOn)
	}
	claims := verifyWithJWKS(t, m["access_token"].(string), testSigner(t).JWKS())
	wantClaims := map[string]any{"aud": "https://vault.azure.net", "iss": "https://sts.windows.net/" + testTenant + "/",
		"tid": testTenant, "oid": "44444444-4444-4444-4444-444444444444", "sub": "44444444-4444-4444-4444-444444444444",
		"appid": ua1Client, "xms_mirid": ua1Res, "idtyp": "app"}
	for k, v := range wantClaims {
		if claims[k] != v {
			t.Errorf("claim %s = %v, want %v", k, claims[k], v)
		}
	}
	if exp, _, _ := numericClaim(claims, "exp"); int64(exp) != expOn {
		t.Errorf("exp %v != expires_on %d", exp, expOn)
	}
	for _, c := range []string{"iat", "nbf"} {
		if _, _, ok := numericClaim(claims, c); !ok {
			t.Errorf("claim %s missing", c)
		}
	}
	e := logEntries(t, f.log)
	if len(e) != 1 || e[0].ClientID != ua1Client || e[0].Status != 200 || e[0].Route != "token" ||
		e[0].Headers.Metadata[0] != "true" || !strings.Contains(e[0].RawTarget, "client_id=") {
		t.Fatalf("log %+v", e)
	}
}

func TestIMDSLenientPaths(t *testing.T) {
	f := newIMDSFixture(t, defaultIMDSConfig())
	q := "?api-version=2018-02-01&resource=r"
	for _, p := range []string{
		`/METADATA//identity\oauth2\token/`,
		`/metadata/identity/\oauth2\token/`,
		"/metadata/identity%2Foauth2%2Ftoken",
		"/Metadata/Identity/OAuth2/Token",
		"/x/../metadata/./identity/oauth2/token//",
		"/metadata/identity%5coauth2%5Ctoken",
	} {
		resp, body := rawGet(t, f.srv, p+q, "Metadata: true")
		if resp.StatusCode != 200 || !strings.Contains(body, "access_token") {
			t.Errorf("%s: %d %s", p, resp.StatusCode, body)
		}
	}
	for _, e := range logEntries(t, f.log) {
		if strings.ToLower(e.Path) != routeToken || e.Route != "token" {
			t.Errorf("logged path %q route %q for %q", e.Path, e.Route, e.RawTarget)
		}
	}
	resp, _ := rawGet(t, f.srv, "/metadata/identity/oauth2/tokenx"+q, "Metadata: true")
	if resp.StatusCode != 404 {
		t.Errorf("tokenx: %d", resp.StatusCode)
	}
}

func TestIMDSRequestValidation(t *testing.T) {
	f := newIMDSFixture(t, defaultIMDSConfig())
	const missingMD = `{"error":"invalid_request","error_description":"Required metadata header not specified"}`
	cases := []struct {
		name, target string
		headers      []string
		status       int
		body         string // exact body, or substring when prefixed with "~"
	}{
		{"no Metadata", tokenQ, nil, 400, missingMD},
		{"Metadata True", tokenQ, []string{"Metadata: True"}, 400, missingMD},
		{"Metadata twice", tokenQ, []string{"Metadata: true", "Metadata: true"}, 400, missingMD},
		{"Metadata list", tokenQ, []string{"Metadata: true, true"}, 400, missingMD},
		{"X-Forwarded-For", tokenQ, []string{"Metadata: true", "X-Forwarded-For: 10.0.0.1"}, 400, `~"error":"invalid_request"`},
		{"empty X-Forwarded-For", tokenQ, []string{"Metadata: true", "X-Forwarded-For:"}, 400, `~"error":"invalid_request"`},
		{"duplicate resource", tokenQ + "&resource=b", []string{"Metadata: true"}, 400, `~Duplicate query parameter 'resource'`},
		{"duplicate api-version", tokenQ + "&api-version=2018-02-01", []string{"Metadata: true"}, 400, `~Duplicate`},
		{"no api-version", "/metadata/identity/oauth2/token?resource=r", []string{"Metadata: true"}, 400,
			`{"error":"Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds","newest-versions":["2025-04-07","2024-07-17","2024-03-15"]}`},
		{"old api-version", "/metadata/identity/oauth2/token?api-version=2017-12-01&resource=r", []string{"Metadata: true"}, 400, `~api-version is invalid`},
		{"no resource", "/metadata/identity/oauth2/token?api-version=2018-02-01", []string{"Metadata: true"}, 400,
			`{"error":"invalid_request","error_description":"Required query variable 'resource' is missing"}`},
		{"empty resource", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=", []string{"Metadata: true"}, 400, `~'resource' is missing`},
		{"two selectors", tokenQ + "&client_id=" + ua1Client + "&msi_res_id=" + ua1Res, []string{"Metadata: true"}, 400, `~"error":"invalid_request"`},
		{"msi_res_id and mi_res_id", tokenQ + "&mi_res_id=" + ua1Res + "&msi_res_id=" + ua1Res, []string{"Metadata: true"}, 400, `~"error":"invalid_request"`},
		{"unknown client", tokenQ + "&client_id=99999999-0000-0000-0000-000000000000", []string{"Metadata: true"}, 400,
			`{"error":"invalid_request","error_description":"Identity not found"}`},
		{"instance without api-version", "/metadata/instance", []string{"Metadata: true"}, 400, `~api-version`},
		{"instance without Metadata", "/metadata/instance?api-version=2021-02-01", nil, 400, missingMD},
		{"unknown metadata path", "/metadata/nothing", []string{"Metadata: true"}, 404, `{"error":"Not found"}`},
		{"other path", "/latest/meta-data/", nil, 404, `{"error":"Not found"}`},
	}
	for _, c := range cases {
		resp, body := rawGet(t, f.srv, c.target, c.headers...)
		ok := resp.StatusCode == c.status
		if strings.HasPrefix(c.body, "~") {
			ok = ok && strings.Contains(body, c.body[1:])
		} else {
			ok = ok && body == c.body
		}
		if !ok {
			t.Errorf("%s: got %d %s", c.name, resp.StatusCode, body)
		}
		if resp.StatusCode == 400 && resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", c.name, resp.Header.Get("Content-Type"))
		}
	}
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+tokenQ, nil)
	req.Header.Set("Metadata", "true")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

func TestIMDSIdentitySelection(t *testing.T) {
	f := newIMDSFixture(t, defaultIMDSConfig())
	get := func(extra string) (int, string) {
		resp, body := rawGet(t, f.srv, tokenQ+extra, "Metadata: true")
		if resp.StatusCode != 200 {
			return resp.StatusCode, body
		}
		return 200, decodeMap(t, body)["client_id"].(string)
	}
	esc := url.QueryEscape
	checks := map[string]string{
		"":                        saClient,
		"&client_id=" + ua2Client: ua2Client,
		"&client_id=" + strings.ToUpper(ua2Client):        ua2Client,
		"&object_id=44444444-4444-4444-4444-444444444444": ua1Client,
		"&msi_res_id=" + esc(ua2Res):                      ua2Client,
		"&mi_res_id=" + esc(ua1Res):                       ua1Client,
		"&client_id=":                                     saClient,
	}
	for q, want := range checks {
		if st, got := get(q); st != 200 || got != want {
			t.Errorf("%q: %d %s, want %s", q, st, got, want)
		}
	}
	// No system-assigned identity: the only user-assigned one is the default ...
	if err := f.imds.Update(&IMDSConfig{UserAssigned: []Identity{{ClientID: ua1Client}}}, true); err != nil {
		t.Fatal(err)
	}
	if st, got := get(""); st != 200 || got != ua1Client {
		t.Errorf("single UA default: %d %s", st, got)
	}
	// ... several: the caller must choose ...
	if err := f.imds.Update(&IMDSConfig{UserAssigned: defaultIMDSConfig().UserAssigned}, true); err != nil {
		t.Fatal(err)
	}
	if st, body := get(""); st != 400 || body != `{"error":"invalid_request","error_description":"Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request"}` {
		t.Errorf("multiple UA: %d %s", st, body)
	}
	// ... none at all.
	if err := f.imds.Update(&IMDSConfig{}, true); err != nil {
		t.Fatal(err)
	}
	if st, body := get(""); st != 400 || !strings.Contains(body, "Identity not found") {
		t.Errorf("no identity: %d %s", st, body)
	}
}

func TestIMDSOtherEndpoints(t *testing.T) {
	f := newIMDSFixture(t, defaultIMDSConfig())
	resp, body := rawGet(t, f.srv, "/metadata/identity/info?api-version=2018-02-01", "Metadata: true")
	if resp.StatusCode != 200 || body != `{"tenantId":"`+testTenant+`"}` {
		t.Errorf("info: %d %s", resp.StatusCode, body)
	}
	resp, body = rawGet(t, f.srv, "/metadata/versions", "Metadata: true")
	if resp.StatusCode != 200 || !strings.Contains(body, `"apiVersions":["2017-03-01"`) {
		t.Errorf("versions: %d %s", resp.StatusCode, body)
	}
	resp, body = rawGet(t, f.srv, "/metadata/instance?api-version=2021-02-01", "Metadata: true")
	if resp.StatusCode != 200 {
		t.Fatalf("instance: %d %s", resp.StatusCode, body)
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		case string:
		default:
			t.Errorf("non-string primitive %#v", v)
		}
	}
	walk(decodeMap(t, body))
	resp, body = rawGet(t, f.srv, "/metadata/instance/compute/vmSize?api-version=2021-02-01&format=text", "Metadata: true")
	if resp.StatusCode != 200 || body != "Standard_D2s_v3" {
		t.Errorf("leaf: %d %s", resp.StatusCode, body)
	}
	resp, _ = rawGet(t, f.srv, "/metadata/instance/compute/vmSize?api-version=2021-02-01", "Metadata: true")
	if resp.StatusCode != 400 {
		t.Errorf("leaf without format=text: %d", resp.StatusCode)
	}
	resp, body = rawGet(t, f.srv, "/metadata/instance/network/interface/0/ipv4/ipAddress/0?api-version=2021-02-01", "Metadata: true")
	if resp.StatusCode != 200 || !strings.Contains(body, "privateIpAddress") {
		t.Errorf("array route: %d %s", resp.StatusCode, body)
	}
	resp, _ = rawGet(t, f.srv, "/metadata/instance/compute/nope?api-version=2021-02-01", "Metadata: true")
	if resp.StatusCode != 404 {
		t.Errorf("missing node: %d", resp.StatusCode)
	}
	// A custom instance document: numbers, booleans and null become strings.
	if err := f.imds.Update(&IMDSConfig{Instance: []byte(`{"compute":{"n":5,"b":true,"z":null,"l":[1.5]}}`)}, false); err != nil {
		t.Fatal(err)
	}
	_, body = rawGet(t, f.srv, "/metadata/instance/compute?api-version=2021-02-01", "Metadata: true")
	if body != `{"b":"true","l":["1.5"],"n":"5","z":""}` {
		t.Errorf("custom instance: %s", body)
	}
}

func TestIMDSThrottling(t *testing.T) {
	m := defaultIMDSConfig()
	m.MaxConcurrent, m.MaxRPS = intp(1), intp(3)
	f := newIMDSFixture(t, m)
	// Rate: 3 admitted within a second, the 4th is throttled.
	var statuses []int
	for i := 0; i < 4; i++ {
		resp, _ := rawGet(t, f.srv, tokenQ, "Metadata: true")
		statuses = append(statuses, resp.StatusCode)
		if i == 3 && (resp.Header.Get("Retry-After") != "1") {
			t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
		}
	}
	if statuses[2] != 200 || statuses[3] != 429 {
		t.Fatalf("rate statuses %v", statuses)
	}
	// Other endpoints are not throttled.
	if resp, _ := rawGet(t, f.srv, "/metadata/versions", "Metadata: true"); resp.StatusCode != 200 {
		t.Errorf("versions throttled: %d", resp.StatusCode)
	}
	time.Sleep(1100 * time.Millisecond)
	// Concurrency: one request held by a latency fault, a second one at the same time gets 429.
	if _, err := f.faults.Add(Fault{Target: "imds", LatencyMS: 800, Count: 1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	done := make(chan int)
	go func() {
		resp, _ := http.Get(f.srv.URL + tokenQ) // no Metadata header: still counted while in flight
		done <- resp.StatusCode
	}()
	time.Sleep(300 * time.Millisecond)
	resp, body := rawGet(t, f.srv, tokenQ, "Metadata: true")
	if resp.StatusCode != 429 || !strings.Contains(body, `"error":"too_many_requests"`) {
		t.Errorf("concurrent: %d %s", resp.StatusCode, body)
	}
	if st := <-done; st != 400 {
		t.Errorf("held request: %d", st)
	}
}

func TestIMDSv2RoutesDefaultStack(t *testing.T) {
	f := newIMDSFixture(t, defaultIMDSConfig())
	addr := strings.TrimPrefix(f.srv.URL, "http://")
	resp, body := rawGet(t, f.srv, "/metadata/identity/getplatformmetadata?cred-api-version=2.0", "Metadata: true")
	var m map[string]string
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &m) != nil ||
		m["node_credential"] != "LEAKED-NODE-CREDENTIAL-getplatformmetadata" {
		t.Errorf("getplatformmetadata: %d %s", resp.StatusCode, body)
	}
	resp, body = raw(t, addr, "POST /Metadata/Identity/IssueCredential HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n"+
		"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
	if resp.StatusCode != 200 || !strings.Contains(body, "LEAKED-NODE-CREDENTIAL-issuecredential") {
		t.Errorf("issuecredential: %d %s", resp.StatusCode, body)
	}
	if resp, _ := rawGet(t, f.srv, "/metadata/identity/issuecredential", "Metadata: true"); resp.StatusCode != 405 ||
		resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET issuecredential: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, _ := rawGet(t, f.srv, "/metadata/identity/getplatformmetadata"); resp.StatusCode != 400 {
		t.Errorf("without Metadata: %d", resp.StatusCode)
	}
	// The default stack does not fold trailing dots: that spelling is another (unknown) path.
	if resp, _ := rawGet(t, f.srv, "/metadata/identity./getplatformmetadata", "Metadata: true"); resp.StatusCode != 404 {
		t.Errorf("trailing dot on the default stack: %d", resp.StatusCode)
	}
	var routes []string
	for _, e := range logEntries(t, f.log) {
		routes = append(routes, e.Route)
	}
	if strings.Join(routes, ",") != "platform_metadata,issue_credential,,,not_found" {
		t.Errorf("routes %v", routes)
	}
}
