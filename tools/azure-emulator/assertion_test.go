package main

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// assertionSpec describes a client assertion to build; zero values mean "like a good client".
type assertionSpec struct {
	alg        string // RS256 (default) or PS256
	thumbprint string // header name: x5t (default) or x5t#S256; "none" for neither
	tpEncode   func([]byte) string
	tpOverride string
	x5c        []string
	signWith   *rsa.PrivateKey
	cert       *testCert
	claims     map[string]any
	drop       []string
	extraHdr   map[string]any
}

func buildAssertion(t *testing.T, s assertionSpec, aud string) string {
	t.Helper()
	certs := testCertificates(t)
	cert := &certs[0]
	if s.cert != nil {
		cert = s.cert
	}
	alg := s.alg
	if alg == "" {
		alg = "RS256"
	}
	hdr := map[string]any{"alg": alg, "typ": "JWT"}
	enc := s.tpEncode
	if enc == nil {
		enc = base64.URLEncoding.EncodeToString // go-autorest: url-safe with padding
	}
	switch s.thumbprint {
	case "", "x5t":
		sum := sha1.Sum(cert.cert.Raw)
		hdr["x5t"] = enc(sum[:])
	case "x5t#S256":
		sum := sha256.Sum256(cert.cert.Raw)
		hdr["x5t#S256"] = enc(sum[:])
	}
	if s.tpOverride != "" {
		hdr["x5t"] = s.tpOverride
	}
	if s.x5c != nil {
		hdr["x5c"] = s.x5c
	}
	for k, v := range s.extraHdr {
		hdr[k] = v
	}
	now := time.Now().Unix()
	claims := map[string]any{"aud": aud, "iss": certClient, "sub": certClient, "jti": newGUID(),
		"nbf": now, "exp": now + 600}
	for k, v := range s.claims {
		claims[k] = v
	}
	for _, k := range s.drop {
		delete(claims, k)
	}
	hb, _ := json.Marshal(hdr)
	cb, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(cb)
	key := cert.key
	if s.signWith != nil {
		key = s.signWith
	}
	d := sha256.Sum256([]byte(input))
	var sig []byte
	var err error
	if alg == "PS256" {
		sig, err = rsa.SignPSS(rand.Reader, key, crypto.SHA256, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	} else {
		sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func assertionForm(assertion string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {certClient}, "resource": {"https://vault.azure.net"},
		"client_assertion_type": {jwtBearerType}, "client_assertion": {assertion}}
}

func TestAssertionAccepted(t *testing.T) {
	f := newAADFixture(t)
	certs := testCertificates(t)
	v1 := "/" + spTenant + "/oauth2/token"
	v2 := "/" + spTenant + "/oauth2/v2.0/token"
	der := base64.StdEncoding.EncodeToString(certs[0].cert.Raw)
	cases := []struct {
		name, path, aud string
		spec            assertionSpec
	}{
		{"go-autorest: RS256, padded url x5t, x5c, aud with query", v1 + "?api-version=1.0", v1 + "?api-version=1.0",
			assertionSpec{x5c: []string{der}}},
		{"aud without query", v1 + "?api-version=1.0", v1, assertionSpec{}},
		{"MSAL Go: PS256, x5t#S256 std base64", v2, v2,
			assertionSpec{alg: "PS256", thumbprint: "x5t#S256", tpEncode: base64.StdEncoding.EncodeToString}},
		{"MSAL Node: x5t#S256 unpadded url", v2, v2,
			assertionSpec{alg: "PS256", thumbprint: "x5t#S256", tpEncode: base64.RawURLEncoding.EncodeToString}},
		{"RS256 raw std x5t, no nbf", v1, v1,
			assertionSpec{tpEncode: base64.RawStdEncoding.EncodeToString, drop: []string{"nbf"}}},
	}
	for _, c := range cases {
		form := assertionForm(buildAssertion(t, c.spec, f.srv.URL+c.aud))
		if c.path == v2 {
			form.Del("resource")
			form.Set("scope", "https://vault.azure.net/.default")
		}
		st, b := f.post(t, c.path, form)
		if st != 200 {
			t.Errorf("%s: %d %v", c.name, st, b)
			continue
		}
		claims := verifyWithJWKS(t, b["access_token"].(string), testSigner(t).JWKS())
		if claims["appid"] != certClient || claims["appidacr"] != "2" {
			t.Errorf("%s: claims %v", c.name, claims)
		}
	}
	// The log keeps the assertion's header and claims but never the assertion itself.
	e := logEntries(t, f.log)[0]
	if e.Assertion == nil || e.Assertion.Header["x5t"] == nil || e.Assertion.Claims["iss"] != certClient ||
		e.Form["client_assertion"] != nil || !*e.AssertionPresent || *e.SecretPresent {
		t.Errorf("log %+v", e)
	}
}

func TestAssertionRejected(t *testing.T) {
	f := newAADFixture(t)
	certs := testCertificates(t)
	v1 := "/" + spTenant + "/oauth2/token"
	aud := f.srv.URL + v1
	now := time.Now().Unix()
	cases := []struct {
		name   string
		spec   assertionSpec
		aud    string
		status int
		code   int
	}{
		{"signed by another key", assertionSpec{signWith: certs[1].key}, aud, 401, 700027},
		{"PS256 signed by another key", assertionSpec{alg: "PS256", signWith: certs[1].key}, aud, 401, 700027},
		{"wrong x5t", assertionSpec{cert: &certs[1]}, aud, 401, 700027},
		{"garbage x5t", assertionSpec{tpOverride: "!!!"}, aud, 401, 700027},
		{"wrong x5t#S256", assertionSpec{thumbprint: "x5t#S256", cert: &certs[1], signWith: certs[0].key}, aud, 401, 700027},
		{"no thumbprint", assertionSpec{thumbprint: "none"}, aud, 401, 700027},
		{"x5c of another cert", assertionSpec{x5c: []string{base64.StdEncoding.EncodeToString(certs[1].cert.Raw)}}, aud, 401, 700027},
		{"wrong aud", assertionSpec{}, "https://login.microsoftonline.com/" + spTenant + "/oauth2/token", 401, 50013},
		{"aud of the v2 endpoint", assertionSpec{}, f.srv.URL + "/" + spTenant + "/oauth2/v2.0/token", 401, 50013},
		{"expired", assertionSpec{claims: map[string]any{"exp": now - 1}}, aud, 401, 700024},
		{"nbf far ahead", assertionSpec{claims: map[string]any{"nbf": now + 900}}, aud, 401, 700024},
		{"no exp", assertionSpec{drop: []string{"exp"}}, aud, 401, 50027},
		{"no jti", assertionSpec{drop: []string{"jti"}}, aud, 401, 50027},
		{"iss differs", assertionSpec{claims: map[string]any{"iss": spClient}}, aud, 401, 700021},
		{"sub differs", assertionSpec{claims: map[string]any{"sub": spClient}}, aud, 401, 700021},
		{"HS256", assertionSpec{alg: "HS256"}, aud, 401, 5002738},
	}
	for _, c := range cases {
		tok := buildAssertion(t, c.spec, c.aud)
		st, b := f.post(t, v1, assertionForm(tok))
		checkAADError(t, c.name, st, b, c.status, "invalid_client", c.code)
	}
	st, b := f.post(t, v1, assertionForm("not.a.jwt"))
	checkAADError(t, "malformed", st, b, 401, "invalid_client", 50027)
	form := assertionForm(buildAssertion(t, assertionSpec{}, aud))
	form.Set("client_id", spClient) // a secret-only app presenting an assertion
	st, b = f.post(t, v1, form)
	checkAADError(t, "secret app", st, b, 401, "invalid_client", 700027)
	form = assertionForm(buildAssertion(t, assertionSpec{}, aud))
	form.Del("client_assertion_type")
	st, b = f.post(t, v1, form)
	checkAADError(t, "no assertion type", st, b, 400, "invalid_request", 900144)
	form = assertionForm(buildAssertion(t, assertionSpec{}, aud))
	form.Set("client_secret", "x")
	st, b = f.post(t, v1, form)
	checkAADError(t, "secret and assertion", st, b, 400, "invalid_request", 9002313)
	// A certificate app presenting a secret.
	st, b = f.post(t, v1, secretForm(certClient, "x", "r"), func(r *http.Request) {})
	checkAADError(t, "cert app with secret", st, b, 401, "invalid_client", 7000215)
}

func TestADFSAssertionWithoutClientID(t *testing.T) {
	f := newAADFixture(t)
	certs := testCertificates(t)
	if err := f.aad.SetApps([]AppConfig{{TenantID: "adfs", ClientID: certClient, CertificatePEM: certs[0].pem}}); err != nil {
		t.Fatal(err)
	}
	path := "/adfs/oauth2/token"
	form := assertionForm(buildAssertion(t, assertionSpec{}, f.srv.URL+path))
	form.Del("client_id")
	st, b := f.post(t, path, form)
	if st != 200 || b["token_type"] != "bearer" || b["expires_in"] != float64(86400) {
		t.Fatalf("adfs assertion: %d %v", st, b)
	}
}
