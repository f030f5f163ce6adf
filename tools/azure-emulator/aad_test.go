package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	spTenant   = "aaaaaaaa-0000-0000-0000-00000000000a"
	spClient   = "bbbbbbbb-0000-0000-0000-00000000000b"
	certClient = "cccccccc-0000-0000-0000-00000000000c"
	adfsClient = "dddddddd-0000-0000-0000-00000000000d"
	spSecret   = "s3cret+/=&"
)

type testCert struct {
	key  *rsa.PrivateKey
	cert *x509.Certificate
	pem  string
}

var (
	certOnce  sync.Once
	testCerts [2]testCert
)

// testCertificates returns two RSA certificates: [0] is registered, [1] is a stranger.
func testCertificates(t *testing.T) [2]testCert {
	certOnce.Do(func() {
		for i := range testCerts {
			key, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: "sp"},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
			if err != nil {
				panic(err)
			}
			cert, _ := x509.ParseCertificate(der)
			testCerts[i] = testCert{key, cert, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
		}
	})
	return testCerts
}

type aadFixture struct {
	srv    *httptest.Server
	aad    *AAD
	log    *RequestLog
	faults *Faults
}

func newAADFixture(t *testing.T) *aadFixture {
	t.Helper()
	certs := testCertificates(t)
	certPath := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(certPath, []byte(certs[0].pem), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{TenantID: testTenant, AAD: &AADConfig{Apps: []AppConfig{
		{TenantID: spTenant, ClientID: spClient, Secret: spSecret},
		{TenantID: spTenant, ClientID: certClient, CertificatePEM: certPath},
		{TenantID: "adfs", ClientID: adfsClient, Secret: "adfs-secret"},
	}}}
	if err := cfg.normalize(); err != nil {
		t.Fatal(err)
	}
	f := &aadFixture{faults: newFaults(), log: &RequestLog{}}
	quit := make(chan struct{})
	var err error
	if f.aad, err = newAAD(cfg, testSigner(t), f.faults, quit); err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(f.log.Wrap("aad", f.aad))
	t.Cleanup(func() { close(quit); f.srv.Close() })
	return f
}

func (f *aadFixture) post(t *testing.T, path string, form url.Values, mod ...func(*http.Request)) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, m := range mod {
		m(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, decodeMap(t, b.String())
}

func secretForm(clientID, secret, resource string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID},
		"client_secret": {secret}, "resource": {resource}}
}

var descRE = regexp.MustCompile(`^AADSTS(\d+): .+\r\nTrace ID: [0-9a-f-]{36}\r\nCorrelation ID: [0-9a-f-]{36}\r\nTimestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$`)

// checkAADError checks status, error and AADSTS code, and the exact B.3 shape.
func checkAADError(t *testing.T, name string, status int, body map[string]any, wantStatus int, wantErr string, wantCode int) {
	t.Helper()
	if status != wantStatus || body["error"] != wantErr {
		t.Errorf("%s: got %d %v, want %d %s", name, status, body, wantStatus, wantErr)
		return
	}
	desc, _ := body["error_description"].(string)
	m := descRE.FindStringSubmatch(desc)
	codes, _ := body["error_codes"].([]any)
	if m == nil || m[1] != itoa(wantCode) || len(codes) != 1 || codes[0] != float64(wantCode) {
		t.Errorf("%s: description/codes %q %v, want AADSTS%d", name, desc, codes, wantCode)
	}
	for _, k := range []string{"timestamp", "trace_id", "correlation_id"} {
		if s, _ := body[k].(string); s == "" || !strings.Contains(desc, s) {
			t.Errorf("%s: %s %q not in the description", name, k, s)
		}
	}
	if body["error_uri"] != "https://login.microsoftonline.com/error?code="+itoa(wantCode) {
		t.Errorf("%s: error_uri %v", name, body["error_uri"])
	}
}

func itoa(i int) string { return big.NewInt(int64(i)).String() }

func TestAADSecretV1V2ADFS(t *testing.T) {
	f := newAADFixture(t)
	// v1, with ?api-version=1.0 like go-autorest.
	st, b := f.post(t, "/"+spTenant+"/oauth2/token?api-version=1.0", secretForm(spClient, spSecret, "https://vault.azure.net"))
	if st != 200 {
		t.Fatalf("v1: %d %v", st, b)
	}
	for _, k := range []string{"token_type", "expires_in", "ext_expires_in", "expires_on", "not_before", "resource", "access_token"} {
		if _, ok := b[k].(string); !ok {
			t.Errorf("v1 field %s: %#v", k, b[k])
		}
	}
	claims := verifyWithJWKS(t, b["access_token"].(string), testSigner(t).JWKS())
	if claims["aud"] != "https://vault.azure.net" || claims["appid"] != spClient || claims["tid"] != spTenant ||
		claims["iss"] != "https://sts.windows.net/"+spTenant+"/" || claims["oid"] != stableGUID("service_principal", spClient) ||
		b["resource"] != "https://vault.azure.net" {
		t.Errorf("v1 claims %v", claims)
	}
	// v2 with HTTP Basic (form-urlencoded parts, RFC 6749 2.3.1).
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"https://graph.microsoft.com/.default"}}
	st, b = f.post(t, "/"+spTenant+"/oauth2/v2.0/token", form, func(r *http.Request) {
		r.SetBasicAuth(url.QueryEscape(spClient), url.QueryEscape(spSecret))
	})
	if st != 200 || b["expires_in"] != float64(86400) || b["ext_expires_in"] != float64(86400) || b["expires_on"] != nil {
		t.Fatalf("v2: %d %v", st, b)
	}
	claims = verifyWithJWKS(t, b["access_token"].(string), testSigner(t).JWKS())
	if claims["aud"] != "https://graph.microsoft.com" || claims["iss"] != "https://login.microsoftonline.com/"+spTenant+"/v2.0" {
		t.Errorf("v2 claims %v", claims)
	}
	// ADFS.
	st, b = f.post(t, "/adfs/oauth2/token", secretForm(adfsClient, "adfs-secret", "https://adfs-resource"))
	if st != 200 || b["expires_in"] != float64(86400) || b["expires_on"] != nil {
		t.Fatalf("adfs: %d %v", st, b)
	}
	entries := logEntries(t, f.log)
	if len(entries) != 3 || entries[0].Form["client_secret"] != nil || *entries[0].SecretPresent != true ||
		entries[0].Form["resource"][0] != "https://vault.azure.net" || !*entries[1].BasicAuth ||
		entries[1].Headers.Authorization != "Basic [redacted]" || entries[0].ClientID != spClient {
		t.Errorf("log %+v", entries)
	}
}

func TestAADErrors(t *testing.T) {
	f := newAADFixture(t)
	v1 := "/" + spTenant + "/oauth2/token"
	st, b := f.post(t, v1, secretForm(spClient, "wrong", "r"))
	checkAADError(t, "wrong secret", st, b, 401, "invalid_client", 7000215)
	st, b = f.post(t, v1, secretForm("eeeeeeee-0000-0000-0000-00000000000e", spSecret, "r"))
	checkAADError(t, "unknown client", st, b, 400, "unauthorized_client", 700016)
	st, b = f.post(t, "/adfs/oauth2/token", secretForm(spClient, spSecret, "r"))
	checkAADError(t, "client of another tenant", st, b, 400, "unauthorized_client", 700016)
	st, b = f.post(t, v1, url.Values{"grant_type": {"client_credentials"}, "client_id": {spClient}, "resource": {"r"}})
	checkAADError(t, "no credential", st, b, 401, "invalid_client", 7000218)
	form := secretForm(spClient, spSecret, "r")
	form.Set("grant_type", "password")
	st, b = f.post(t, v1, form)
	checkAADError(t, "bad grant", st, b, 400, "unsupported_grant_type", 70003)
	form.Del("grant_type")
	st, b = f.post(t, v1, form)
	checkAADError(t, "no grant", st, b, 400, "invalid_request", 900144)
	st, b = f.post(t, v1, secretForm(spClient, spSecret, ""))
	checkAADError(t, "no resource", st, b, 400, "invalid_request", 900144)
	st, b = f.post(t, "/"+spTenant+"/oauth2/v2.0/token", secretForm(spClient, spSecret, "r"))
	checkAADError(t, "v2 no scope", st, b, 400, "invalid_request", 900144)
	form = secretForm(spClient, spSecret, "")
	form.Set("scope", "https://vault.azure.net")
	st, b = f.post(t, "/"+spTenant+"/oauth2/v2.0/token", form)
	checkAADError(t, "v2 scope without /.default", st, b, 400, "invalid_scope", 1002012)
	st, b = f.post(t, "/ffffffff-0000-0000-0000-00000000000f/oauth2/token", secretForm(spClient, spSecret, "r"))
	checkAADError(t, "unknown tenant", st, b, 400, "invalid_request", 90002)
	st, b = f.post(t, v1, secretForm(spClient, spSecret, "r"), func(r *http.Request) { r.Method = http.MethodPut })
	checkAADError(t, "PUT", st, b, 405, "invalid_request", 900561)
	// The correlation id echoes client-request-id.
	const corr = "01234567-89ab-cdef-0123-456789abcdef"
	_, b = f.post(t, v1, secretForm(spClient, "wrong", "r"), func(r *http.Request) { r.Header.Set("client-request-id", corr) })
	if b["correlation_id"] != corr {
		t.Errorf("correlation_id %v", b["correlation_id"])
	}
	resp, err := http.Get(f.srv.URL + v1)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("GET token: %d", resp.StatusCode)
	}
}

func TestAADDiscovery(t *testing.T) {
	f := newAADFixture(t)
	for path, want := range map[string]string{
		"/" + spTenant + "/v2.0/.well-known/openid-configuration": "/" + spTenant + "/oauth2/v2.0/token",
		"/" + spTenant + "/.well-known/openid-configuration":      "/" + spTenant + "/oauth2/token",
		"/adfs/.well-known/openid-configuration":                  "/adfs/oauth2/token",
	} {
		resp, err := http.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		resp.Body.Close()
		m := decodeMap(t, b.String())
		if resp.StatusCode != 200 || m["token_endpoint"] != f.srv.URL+want || m["jwks_uri"] == nil || m["issuer"] == nil {
			t.Errorf("%s: %d %v", path, resp.StatusCode, m)
		}
	}
	resp, err := http.Get(f.srv.URL + "/discovery/keys")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	resp.Body.Close()
	keys, _ := decodeMap(t, b.String())["keys"].([]any)
	if resp.StatusCode != 200 || len(keys) != 1 {
		t.Errorf("jwks: %d %s", resp.StatusCode, b.String())
	}
}
