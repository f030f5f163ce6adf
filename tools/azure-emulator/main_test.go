package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func startEmulator(t *testing.T, cfg string) (Ready, string, context.CancelFunc, chan error) {
	t.Helper()
	dir := t.TempDir()
	cfgPath, readyPath, logPath := filepath.Join(dir, "config.json"), filepath.Join(dir, "ready.json"), filepath.Join(dir, "requests.jsonl")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfgPath, readyPath, logPath) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(readyPath)
		if err == nil {
			var r Ready
			if err := json.Unmarshal(data, &r); err != nil {
				t.Fatalf("ready file: %v: %s", err, data)
			}
			t.Cleanup(func() { cancel(); <-done })
			return r, logPath, cancel, done
		}
		select {
		case err := <-done:
			t.Fatalf("emulator exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no ready file")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func httpJSON(t *testing.T, c *http.Client, method, u string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, u, rd)
	req.Header.Set("Metadata", "true")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestEmulatorEndToEnd(t *testing.T) {
	certs := testCertificates(t)
	certPEM, _ := json.Marshal(certs[0].pem)
	cfg := `{"tenant_id":"` + testTenant + `","token_lifetime_sec":3600,
	  "imds":{"listen":"127.0.0.1:0","user_assigned":[{"client_id":"` + ua1Client + `"}]},
	  "aad":{"listen":"127.0.0.1:0","tls":true,"apps":[
	    {"tenant_id":"` + spTenant + `","client_id":"` + spClient + `","secret":"s3cret"},
	    {"tenant_id":"` + spTenant + `","client_id":"` + certClient + `","certificate_pem":` + string(certPEM) + `}]},
	  "proxy":{"listen":"127.0.0.1:0"}}`
	ready, logPath, cancel, done := startEmulator(t, cfg)
	if ready.IMDS == "" || ready.AAD == "" || ready.Proxy == "" || ready.AADCA == "" || ready.ControlSocket == "" ||
		!strings.HasPrefix(ready.Control, "http://127.0.0.1:") || ready.JWKSURL != "https://"+ready.AAD+"/discovery/keys" {
		t.Fatalf("ready %+v", ready)
	}
	plain := &http.Client{Timeout: 10 * time.Second}
	// IMDS.
	st, body := httpJSON(t, plain, "GET", "http://"+ready.IMDS+tokenQ, nil)
	if st != 200 {
		t.Fatalf("imds: %d %s", st, body)
	}
	// AAD over TLS, verified with the emulator's CA.
	pem, err := os.ReadFile(ready.AADCA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("bad ca.pem")
	}
	tlsClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	form := secretForm(spClient, "s3cret", "https://management.azure.com/")
	resp, err := tlsClient.PostForm(ready.AADURL+"/"+spTenant+"/oauth2/token", form)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("aad: %d %s", resp.StatusCode, b)
	}
	var tok map[string]string
	_ = json.Unmarshal(b, &tok)
	_, jwksBody := httpJSON(t, tlsClient, "GET", ready.JWKSURL, nil)
	var jwks map[string]any
	_ = json.Unmarshal(jwksBody, &jwks)
	if claims := verifyWithJWKS(t, tok["access_token"], jwks); claims["aud"] != "https://management.azure.com/" {
		t.Errorf("claims %v", claims)
	}
	// Certificate app over TLS: the assertion's aud carries the https scheme.
	tokenURL := ready.AADURL + "/" + spTenant + "/oauth2/token"
	resp, err = tlsClient.PostForm(tokenURL, assertionForm(buildAssertion(t, assertionSpec{}, tokenURL)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("assertion over TLS: %d", resp.StatusCode)
	}
	// Through the CONNECT proxy.
	proxyURL, _ := url.Parse("http://" + ready.Proxy)
	viaProxy := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL),
		TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if st, b := httpJSON(t, viaProxy, "GET", ready.JWKSURL, nil); st != 200 {
		t.Errorf("via proxy: %d %s", st, b)
	}
	viaProxy.CloseIdleConnections()
	// Control API over TCP and over the unix socket.
	ctl := ready.Control
	if st, _ := httpJSON(t, plain, "GET", ctl+"/healthz", nil); st != 200 {
		t.Errorf("healthz %d", st)
	}
	if st, _ := httpJSON(t, plain, "POST", ctl+"/faults", map[string]any{"target": "x", "status": 500}); st != 400 {
		t.Errorf("bad fault accepted: %d", st)
	}
	if st, b := httpJSON(t, plain, "POST", ctl+"/faults", map[string]any{"target": "imds", "status": 500, "count": 1}); st != 200 {
		t.Fatalf("fault: %d %s", st, b)
	}
	if st, _ := httpJSON(t, plain, "GET", "http://"+ready.IMDS+tokenQ, nil); st != 500 {
		t.Errorf("fault not applied: %d", st)
	}
	unix := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", ready.ControlSocket)
		}}}
	st, b = httpJSON(t, unix, "GET", "http://control/log", nil)
	var entries []LogEntry
	if err := json.Unmarshal(b, &entries); err != nil || st != 200 {
		t.Fatalf("log: %d %v", st, err)
	}
	listeners := map[string]int{}
	for _, e := range entries {
		listeners[e.Listener]++
		if e.Listener == "proxy" && (e.Method != "CONNECT" || e.Upstream != ready.AAD || e.Status != 200) {
			t.Errorf("proxy entry %+v", e)
		}
		if e.Listener == "aad" && e.Form != nil && (e.Form["client_secret"] != nil || e.Form["client_assertion"] != nil) {
			t.Errorf("secret logged: %+v", e)
		}
	}
	if listeners["imds"] != 2 || listeners["aad"] != 4 || listeners["proxy"] != 1 {
		t.Errorf("log listeners %v", listeners)
	}
	// Identities replaced at run time.
	if st, b := httpJSON(t, plain, "POST", ctl+"/config/imds", map[string]any{
		"user_assigned": []map[string]string{{"client_id": ua2Client}}}); st != 200 {
		t.Fatalf("config/imds: %d %s", st, b)
	}
	if st, b := httpJSON(t, plain, "GET", "http://"+ready.IMDS+tokenQ, nil); st != 200 || !strings.Contains(string(b), ua2Client) {
		t.Errorf("after config/imds: %d %s", st, b)
	}
	if st, _ := httpJSON(t, plain, "DELETE", ctl+"/log", nil); st != 200 {
		t.Error("DELETE /log")
	}
	if _, b := httpJSON(t, plain, "GET", ctl+"/log", nil); string(b) != "[]" {
		t.Errorf("log after clear: %s", b)
	}
	// The log file has one JSON line per finished request (the proxy tunnel may still be closing).
	var lines int
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		data, _ := os.ReadFile(logPath)
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		lines = 0
		for sc.Scan() {
			var e LogEntry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil || !e.Completed {
				t.Fatalf("log line %q: %v", sc.Text(), err)
			}
			lines++
		}
		if lines >= 8 || time.Now().After(deadline) {
			break
		}
	}
	if lines != 8 {
		t.Errorf("log file has %d lines", lines)
	}
	// Stopping is prompt even with a request hanging.
	httpJSON(t, plain, "POST", ctl+"/faults", map[string]any{"target": "imds", "hang": true})
	go func() { _, _ = plain.Get("http://" + ready.IMDS + tokenQ) }()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
		done <- nil // for the cleanup
	case <-time.After(3 * time.Second):
		t.Fatal("did not stop")
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("stop took %v", el)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for name, cfg := range map[string]string{
		"unknown field": `{"imds":{"listen":"127.0.0.1:0","bogus":1}}`,
		"no client_id":  `{"imds":{"user_assigned":[{"object_id":"x"}]}}`,
		"app no cred":   `{"aad":{"apps":[{"tenant_id":"t","client_id":"c"}]}}`,
		"not json":      `{`,
	} {
		p := filepath.Join(dir, "c.json")
		_ = os.WriteFile(p, []byte(cfg), 0o600)
		if _, err := loadConfig(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
