package main

import (
	"bufio"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	testSignerOnce sync.Once
	testSignerVal  *Signer
)

// testSigner shares one RSA key between tests (key generation is the slow part).
func testSigner(t *testing.T) *Signer {
	t.Helper()
	testSignerOnce.Do(func() {
		s, err := newSigner()
		if err != nil {
			panic(err)
		}
		testSignerVal = s
	})
	return testSignerVal
}

const (
	testTenant = "72f988bf-0000-0000-0000-000000000001"
	saClient   = "11111111-1111-1111-1111-111111111111"
	ua1Client  = "22222222-2222-2222-2222-222222222222"
	ua2Client  = "33333333-3333-3333-3333-333333333333"
	ua1Res     = "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/one"
	ua2Res     = "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/two"
)

func intp(i int) *int { return &i }

// imdsFixture is a fake IMDS behind an httptest server, with its log and faults.
type imdsFixture struct {
	srv    *httptest.Server
	imds   *IMDS
	log    *RequestLog
	faults *Faults
	quit   chan struct{}
}

func newIMDSFixture(t *testing.T, m *IMDSConfig) *imdsFixture {
	t.Helper()
	cfg := &Config{TenantID: testTenant, IMDS: m}
	if err := cfg.normalize(); err != nil {
		t.Fatal(err)
	}
	f := &imdsFixture{faults: newFaults(), quit: make(chan struct{}), log: &RequestLog{}}
	var err error
	if f.imds, err = newIMDS(cfg, testSigner(t), f.faults, f.quit); err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(f.log.Wrap("imds", f.imds))
	t.Cleanup(func() { close(f.quit); f.srv.Close() })
	return f
}

func defaultIMDSConfig() *IMDSConfig {
	return &IMDSConfig{
		SystemAssigned: &Identity{ClientID: saClient},
		UserAssigned: []Identity{
			{ClientID: ua1Client, ObjectID: "44444444-4444-4444-4444-444444444444", ResourceID: ua1Res},
			{ClientID: ua2Client, ResourceID: ua2Res},
		},
		MaxConcurrent: intp(0), MaxRPS: intp(0),
	}
}

// raw sends request text verbatim and returns the response and its body.
func raw(t *testing.T, addr, text string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, text); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// rawGet sends "GET target" with the given extra header lines.
func rawGet(t *testing.T, srv *httptest.Server, target string, headers ...string) (*http.Response, string) {
	t.Helper()
	addr := strings.TrimPrefix(srv.URL, "http://")
	text := "GET " + target + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n"
	for _, h := range headers {
		text += h + "\r\n"
	}
	return raw(t, addr, text+"\r\n")
}

func decodeMap(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("not a JSON object: %v: %q", err, body)
	}
	return m
}

// verifyWithJWKS checks an RS256 token against a JWKS document the way a relying party would,
// and returns its claims.
func verifyWithJWKS(t *testing.T, token string, jwks map[string]any) map[string]any {
	t.Helper()
	var set struct {
		Keys []struct{ Kid, N, E string } `json:"keys"`
	}
	b, _ := json.Marshal(jwks)
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	p, err := parseJWT(token)
	if err != nil {
		t.Fatal(err)
	}
	if p.Header["alg"] != "RS256" || p.Header["typ"] != "JWT" {
		t.Fatalf("header %v", p.Header)
	}
	for _, k := range set.Keys {
		if k.Kid != p.Header["kid"] {
			continue
		}
		n, _ := base64.RawURLEncoding.DecodeString(k.N)
		e, _ := base64.RawURLEncoding.DecodeString(k.E)
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		d := sha256.Sum256([]byte(p.SigningInput))
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], p.Signature); err != nil {
			t.Fatalf("signature does not verify: %v", err)
		}
		return p.Claims
	}
	t.Fatalf("kid %v not in JWKS", p.Header["kid"])
	return nil
}

func logEntries(t *testing.T, l *RequestLog) []LogEntry {
	t.Helper()
	var out []LogEntry
	if err := json.Unmarshal(l.Snapshot(""), &out); err != nil {
		t.Fatal(err)
	}
	return out
}
