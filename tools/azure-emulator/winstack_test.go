package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// winFixture is the fake IMDS behind the Windows stack on a loopback port.
type winFixture struct {
	addr   string
	log    *RequestLog
	faults *Faults
}

func newWinFixture(t *testing.T) *winFixture {
	t.Helper()
	cfg := &Config{TenantID: testTenant, IMDS: defaultIMDSConfig()}
	if err := cfg.normalize(); err != nil {
		t.Fatal(err)
	}
	f := &winFixture{log: &RequestLog{}, faults: newFaults()}
	quit := make(chan struct{})
	m, err := newIMDS(cfg, testSigner(t), f.faults, quit)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ws := newWinStack(ln, f.log.Wrap("imds", m), f.log, "imds")
	done := make(chan error, 1)
	go func() { done <- ws.Serve() }()
	t.Cleanup(func() {
		close(quit)
		ws.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	f.addr = ln.Addr().String()
	return f
}

// winClient is one raw connection.
type winClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (f *winFixture) dial(t *testing.T) *winClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", f.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &winClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (w *winClient) send(s string) {
	w.t.Helper()
	if _, err := io.WriteString(w.c, s); err != nil {
		w.t.Fatal(err)
	}
}

// exact reads exactly len(want) bytes and compares them.
func (w *winClient) exact(want string) {
	w.t.Helper()
	_ = w.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(w.br, got); err != nil {
		w.t.Fatalf("reading %q: %v (got %q)", want, err, got)
	}
	if string(got) != want {
		w.t.Fatalf("got %q, want %q", got, want)
	}
}

// response reads one response to a request with the given method.
func (w *winClient) response(method string) (*http.Response, string) {
	w.t.Helper()
	_ = w.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(w.br, &http.Request{Method: method})
	if err != nil {
		w.t.Fatalf("reading a response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		w.t.Fatalf("reading a body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether the server ended the connection (EOF within a second).
func (w *winClient) closed() bool {
	_ = w.c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := w.br.ReadByte()
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// framed checks the framing every application answer of the stack has.
func framed(t *testing.T, resp *http.Response, body string, method string) {
	t.Helper()
	cl := resp.Header.Get("Content-Length")
	if cl == "" || len(resp.TransferEncoding) != 0 {
		t.Errorf("%s answer %d not framed by Content-Length: %v", method, resp.StatusCode, resp.Header)
	}
	if method != http.MethodHead && cl != strconv.Itoa(len(body)) {
		t.Errorf("Content-Length %s for a body of %d bytes", cl, len(body))
	}
	if resp.Header.Get("Server") != imdsServerHeader || resp.Header.Get("Date") == "" {
		t.Errorf("Server/Date: %v", resp.Header)
	}
}

const continue100 = "HTTP/1.1 100 Continue\r\n\r\n"

func TestWinStackExpectContinue(t *testing.T) {
	f := newWinFixture(t)
	w := f.dial(t)
	cases := []struct {
		name, head, body string
		status           int
	}{
		{"GET without a body", "GET " + tokenQ + " HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nExpect: 100-continue\r\n\r\n", "", 200},
		{"GET with Content-Length 0", "GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n", "", 200},
		{"POST with a body", "POST /metadata/identity/issuecredential HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n", "hello", 200},
		{"POST to the token path", "POST " + tokenQ + " HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n", "a=b", 405},
		{"chunked PUT to an unknown path", "PUT /nowhere HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n", "3\r\nabc\r\n0\r\n\r\n", 404},
		{"without Metadata", "DELETE /metadata/instance HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n", "", 400},
	}
	for _, c := range cases {
		w.send(c.head)
		// The interim answer comes before the client sends any body byte.
		w.exact(continue100)
		w.send(c.body)
		resp, body := w.response("")
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d %s", c.name, resp.StatusCode, body)
		}
		framed(t, resp, body, "")
		if resp.Close {
			t.Errorf("%s: connection closed", c.name)
		}
	}
	// HEAD: the interim answer, then headers only.
	w.send("HEAD /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nExpect: 100-continue\r\n\r\n")
	w.exact(continue100)
	if resp, _ := w.response(http.MethodHead); resp.StatusCode != 200 {
		t.Errorf("HEAD: %d", resp.StatusCode)
	}
	// No interim answer without the expectation, nor to an HTTP/1.0 client.
	w.send("GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nContent-Length: 0\r\n\r\n")
	w.exact("HTTP/1.1 200 OK\r\n")
}

func TestWinStackNoContinueForHTTP10(t *testing.T) {
	f := newWinFixture(t)
	w := f.dial(t)
	w.send("POST /metadata/identity/issuecredential HTTP/1.0\r\nMetadata: true\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi")
	w.exact("HTTP/1.1 200 OK\r\n")
}

func TestDefaultStackUnchangedForExpect(t *testing.T) {
	// Go's server sends 100 Continue only when a handler reads the body: a GET never gets one.
	f := newIMDSFixture(t, defaultIMDSConfig())
	resp, body := rawGet(t, f.srv, tokenQ, "Metadata: true", "Expect: 100-continue")
	if resp.StatusCode != 200 || !strings.Contains(body, "access_token") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}

func TestWinStackHead(t *testing.T) {
	f := newWinFixture(t)
	w := f.dial(t)
	w.send("GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n")
	_, getBody := w.response("")
	w.send("HEAD /Metadata/Versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n" +
		"HEAD /nowhere HTTP/1.1\r\nHost: x\r\n\r\n" +
		"GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n")
	resp, _ := w.response(http.MethodHead)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != strconv.Itoa(len(getBody)) {
		t.Errorf("HEAD: %d %v (GET body %d bytes)", resp.StatusCode, resp.Header, len(getBody))
	}
	framed(t, resp, "", http.MethodHead)
	resp, _ = w.response(http.MethodHead)
	if resp.StatusCode != 404 || resp.Header.Get("Content-Length") != strconv.Itoa(len(`{"error":"Not found"}`)) {
		t.Errorf("HEAD 404: %d %v", resp.StatusCode, resp.Header)
	}
	// No body bytes came after the HEAD answers: the next response parses right after them.
	if resp, body := w.response(""); resp.StatusCode != 200 || body != getBody {
		t.Errorf("GET after HEAD: %d %q", resp.StatusCode, body)
	}
	w.send("HEAD " + tokenQ + " HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n" +
		"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := w.response(http.MethodHead); resp.StatusCode != 200 || resp.ContentLength < 500 {
		t.Errorf("HEAD token: %d %d", resp.StatusCode, resp.ContentLength)
	}
	if resp, _ := w.response(""); resp.StatusCode != 404 {
		t.Errorf("after HEAD token: %d", resp.StatusCode)
	}
	var heads []string
	for _, e := range logEntries(t, f.log) {
		if e.Method == http.MethodHead {
			heads = append(heads, e.Route+":"+strconv.Itoa(e.Status))
		}
	}
	if strings.Join(heads, ",") != "versions:200,not_found:404,token:200" {
		t.Errorf("HEAD log entries %v", heads)
	}
}

func TestWinFoldPath(t *testing.T) {
	ok := map[string]string{
		"/":                                   "/",
		"/metadata/identity./issuecredential": "/metadata/identity/issuecredential",
		"/metadata./identity/getplatformmetadata":  "/metadata/identity/getplatformmetadata",
		"/Metadata/Identity/OAuth2/Token":          "/Metadata/Identity/OAuth2/Token",
		`/metadata\identity\oauth2\token\`:         "/metadata/identity/oauth2/token",
		"/metadata%5Cidentity%2Foauth2/token":      "/metadata/identity/oauth2/token",
		"/metadata/identity/oauth2/token.%20.%20":  "/metadata/identity/oauth2/token",
		"/metadata/identity%20/oauth2/token":       "/metadata/identity/oauth2/token",
		"/metadata/identity/oauth2/token..":        "/metadata/identity/oauth2/token",
		"/metadata/identity/oauth2/...":            "/metadata/identity/oauth2",
		"/metadata/x/../identity/./oauth2/token":   "/metadata/identity/oauth2/token",
		"/metadata/x/%2e%2e/identity/oauth2/token": "/metadata/identity/oauth2/token",
		"/metadata/x/..%20/identity":               "/metadata/identity",
		"/../../metadata//versions":                "/metadata/versions",
		"/metadata/%u0069dentity":                  "/metadata/identity",
		"/metadata/identity/oauth2/token%252e":     "/metadata/identity/oauth2/token%2e",
		"/caf%C3%A9":                               "/caf\u00e9",
	}
	for in, want := range ok {
		got, err := winFoldPath(in)
		if err != nil || got != want {
			t.Errorf("winFoldPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"/a%zz", "/a%4", "/a%", "/a%00", "/a%1F", "/a%7f", "/a%C2%85", "/a%u0000",
		"/a%u12", "/" + strings.Repeat("s", 261), strings.Repeat("/s", 256)} {
		if got, err := winFoldPath(in); err == nil {
			t.Errorf("winFoldPath(%q) = %q, want an error", in, got)
		}
	}
}

func TestWinStackPathFolding(t *testing.T) {
	f := newWinFixture(t)
	const q = "?api-version=2018-02-01&resource=r"
	cases := []struct {
		method, target, route string
		status                int
	}{
		{"POST", "/metadata/identity./issuecredential", "issue_credential", 200},
		{"POST", "/METADATA/IDENTITY/ISSUECREDENTIAL.", "issue_credential", 200},
		{"POST", `/metadata\identity\issuecredential`, "issue_credential", 200},
		{"GET", "/metadata./identity/getplatformmetadata?cred-api-version=2.0", "platform_metadata", 200},
		{"GET", "/metadata/identity%20%20/getplatformmetadata", "platform_metadata", 200},
		{"GET", "/Metadata/Identity/OAuth2/Token" + q, "token", 200},
		{"GET", `/metadata\identity\oauth2\token` + q, "token", 200},
		{"GET", "/metadata/identity/oauth2/token.." + q, "token", 200},
		{"GET", "/metadata/identity/oauth2/token%2E%20" + q, "token", 200},
		{"GET", "/metadata/%u0069dentity/oauth2/token" + q, "token", 200},
		{"GET", "/metadata/a/b/../../identity/./oauth2/token" + q, "token", 200},
		{"GET", "http://169.254.169.254/metadata/identity./oauth2/token" + q, "token", 200},
		{"GET", "/metadata/identity/oauth2/token%252e" + q, "not_found", 404},
		{"GET", "/metadata/versions./", "versions", 200},
		{"GET", "/metadata/instance./compute./name.?api-version=2021-02-01&format=text", "instance", 200},
	}
	for _, c := range cases {
		w := f.dial(t)
		w.send(c.method + " " + c.target + " HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nContent-Length: 0\r\n\r\n")
		resp, body := w.response(c.method)
		if resp.StatusCode != c.status {
			t.Errorf("%s %s: %d %s", c.method, c.target, resp.StatusCode, body)
		}
		if c.route == "issue_credential" || c.route == "platform_metadata" {
			if !strings.Contains(body, `"node_credential":"LEAKED-`) {
				t.Errorf("%s: body %s", c.target, body)
			}
		}
	}
	entries := logEntries(t, f.log)
	if len(entries) != len(cases) {
		t.Fatalf("%d log entries for %d requests", len(entries), len(cases))
	}
	for i, e := range entries {
		if e.Route != cases[i].route || e.RawTarget != cases[i].target {
			t.Errorf("entry %d: route %q raw %q, want %q %q", i, e.Route, e.RawTarget, cases[i].route, cases[i].target)
		}
	}
	if p := entries[0].Path; p != "/metadata/identity/issuecredential" {
		t.Errorf("logged path %q", p)
	}
}

func TestWinStackKeepAliveAfterErrors(t *testing.T) {
	f := newWinFixture(t)
	if _, err := f.faults.Add(Fault{Target: "imds", Status: 503, Count: 1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	w := f.dial(t)
	steps := []struct {
		req    string
		status int
	}{
		{"GET " + tokenQ + " HTTP/1.1\r\nHost: x\r\n\r\n", 503},                                          // injected fault
		{"GET " + tokenQ + " HTTP/1.1\r\nHost: x\r\n\r\n", 400},                                          // no Metadata
		{"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404},                                                // not found
		{"POST " + tokenQ + " HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nContent-Length: 1\r\n\r\nx", 405}, // method
		{"GET /metadata/identity/oauth2/token?resource=r HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n", 400},
		{"GET /metadata/instance?api-version=2021-02-01&a=1&a=2 HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n", 400},
		{"GET " + tokenQ + "&client_id=nobody HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n", 400},
		{"GET " + tokenQ + " HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n", 200},
	}
	for i, s := range steps {
		w.send(s.req)
		resp, body := w.response("")
		if resp.StatusCode != s.status || resp.Close {
			t.Errorf("step %d: %d close=%v %s", i, resp.StatusCode, resp.Close, body)
		}
		framed(t, resp, body, "")
	}
	// HTTP/1.1 with Connection: close: answered, then closed.
	w.send("GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n")
	if resp, _ := w.response(""); resp.StatusCode != 200 || !resp.Close || !w.closed() {
		t.Errorf("Connection: close not honoured: %v", resp.Header)
	}
	// HTTP/1.0: persistent only when asked for.
	w = f.dial(t)
	w.send("GET /nowhere HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
	resp, _ := w.response("")
	if resp.StatusCode != 404 || resp.Header.Get("Connection") != "keep-alive" {
		t.Errorf("HTTP/1.0 keep-alive: %d %v", resp.StatusCode, resp.Header)
	}
	w.send("GET /nowhere HTTP/1.0\r\n\r\n")
	resp, _ = w.response("")
	if resp.StatusCode != 404 || !resp.Close || !w.closed() {
		t.Errorf("HTTP/1.0 without keep-alive: %d %v", resp.StatusCode, resp.Header)
	}
}

func TestWinStackPipelining(t *testing.T) {
	f := newWinFixture(t)
	w := f.dial(t)
	w.send("GET " + tokenQ + " HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n" +
		"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n" +
		"POST /metadata/identity/issuecredential HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" +
		"HEAD /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n" +
		"GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n")
	want := []struct {
		method, contains string
		status           int
	}{{"GET", "access_token", 200}, {"GET", "Not found", 404}, {"POST", "LEAKED-", 200},
		{"HEAD", "", 200}, {"GET", "apiVersions", 200}}
	for i, x := range want {
		resp, body := w.response(x.method)
		if resp.StatusCode != x.status || !strings.Contains(body, x.contains) {
			t.Errorf("response %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if !w.closed() {
		t.Error("not closed after Connection: close")
	}
}

func TestWinStackRefusals(t *testing.T) {
	f := newWinFixture(t)
	cases := []struct {
		name, req string
		status    int
		heading   string
		logged    bool
	}{
		{"bad escape", "GET /metadata/versions%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Invalid URL", true},
		{"encoded NUL", "GET /metadata%00/versions HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Invalid URL", true},
		{"long segment", "GET /" + strings.Repeat("a", 261) + " HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Invalid URL", true},
		{"no Host", "GET /metadata/versions HTTP/1.1\r\nMetadata: true\r\n\r\n", 400, "Invalid Hostname", true},
		{"two Hosts", "GET /metadata/versions HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "Invalid Hostname", true},
		{"obs-fold", "GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata:\r\n true\r\n\r\n", 400, "Invalid Header", true},
		{"space before colon", "GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata : true\r\n\r\n", 400, "Invalid Header", true},
		{"NUL in a value", "GET /metadata/versions HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400, "Invalid Header", true},
		{"CL and TE", "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "Invalid Content Length", true},
		{"two lengths", "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxy", 400, "Invalid Content Length", true},
		{"bad length", "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "Invalid Content Length", true},
		{"gzip", "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "Not Implemented", true},
		{"bad chunk", "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "Invalid Chunk", true},
		{"body too large", "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", 413, "Request Entity Too Large", true},
		{"HTTP/2.0", "GET /metadata/versions HTTP/2.0\r\nHost: x\r\n\r\n", 505, "HTTP Version Not Supported", true},
		{"HTTP/1.x", "GET /metadata/versions HTTP/1.x\r\nHost: x\r\n\r\n", 400, "Bad Request", true},
		{"bad method", "G@T /metadata/versions HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Invalid Verb", true},
		{"head too long", "GET /metadata/versions HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 17000) + "\r\n\r\n", 400, "Request Too Long", true},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Invalid URL", true},
		{"junk", "\x16\x03\x01\x00\x6e\x01\x00\x00\x6a\x03\x03\r\n\r\n", 400, "Bad Request", false},
		{"two spaces", "GET  /metadata/versions HTTP/1.1\r\nHost: x\r\n\r\n", 400, "Bad Request", false},
	}
	for _, c := range cases {
		before := len(logEntries(t, f.log))
		w := f.dial(t)
		w.send(c.req)
		resp, body := w.response("")
		if resp.StatusCode != c.status || !strings.Contains(body, "<h2>"+c.heading) && !strings.Contains(body, "<h2>Bad Request - "+c.heading) {
			t.Errorf("%s: %d %q", c.name, resp.StatusCode, body)
		}
		if resp.Header.Get("Server") != winServerHeader || !resp.Close ||
			resp.Header.Get("Content-Type") != "text/html; charset=us-ascii" ||
			resp.Header.Get("Content-Length") != strconv.Itoa(len(body)) {
			t.Errorf("%s: headers %v", c.name, resp.Header)
		}
		if !w.closed() {
			t.Errorf("%s: connection left open", c.name)
		}
		entries := logEntries(t, f.log)
		if got := len(entries) - before; c.logged != (got == 1) || got > 1 {
			t.Errorf("%s: %d new log entries", c.name, got)
		} else if c.logged {
			e := entries[len(entries)-1]
			if e.Route != routeRejectedByStack || e.Status != c.status || !e.Completed {
				t.Errorf("%s: log %+v", c.name, e)
			}
		}
	}
}

func TestWinStackHangEndsWhenClientGoes(t *testing.T) {
	f := newWinFixture(t)
	if _, err := f.faults.Add(Fault{Target: "imds", Hang: true, Count: 1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	w := f.dial(t)
	w.send("GET " + tokenQ + " HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n")
	waitFor := func(what string, ok func([]LogEntry) bool) {
		t.Helper()
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if ok(logEntries(t, f.log)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: log %+v", what, logEntries(t, f.log))
			}
		}
	}
	waitFor("request in flight", func(e []LogEntry) bool { return len(e) == 1 })
	time.Sleep(100 * time.Millisecond)
	if e := logEntries(t, f.log); e[0].Completed {
		t.Fatalf("hang answered: %+v", e[0])
	}
	w.c.Close()
	waitFor("hang ended", func(e []LogEntry) bool {
		return e[0].Completed && e[0].Status == 0 && e[0].Error == "hang: client went away"
	})
}

func TestWindowsStackFromConfig(t *testing.T) {
	cfg := `{"imds":{"listen":"127.0.0.1:0","http_stack":"windows","user_assigned":[{"client_id":"` + ua1Client + `"}]}}`
	ready, _, _, _ := startEmulator(t, cfg)
	if ready.IMDSHTTPStack != "windows" {
		t.Fatalf("ready %+v", ready)
	}
	c, err := net.Dial("tcp", ready.IMDS)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := &winClient{t: t, c: c, br: bufio.NewReader(c)}
	w.send("GET /metadata./versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nExpect: 100-continue\r\n\r\n")
	w.exact(continue100)
	if resp, body := w.response(""); resp.StatusCode != 200 || !strings.Contains(body, "apiVersions") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// The stack is chosen at start-up only.
	plain := &http.Client{Timeout: 10 * time.Second}
	if st, b := httpJSON(t, plain, "POST", ready.Control+"/config/imds", map[string]any{"http_stack": "go"}); st != 400 {
		t.Errorf("http_stack changed at run time: %d %s", st, b)
	}
	// The default stack is reported as "go".
	ready, _, _, _ = startEmulator(t, `{"imds":{"listen":"127.0.0.1:0"}}`)
	if ready.IMDSHTTPStack != "go" {
		t.Errorf("default stack %q", ready.IMDSHTTPStack)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "c.json")
	_ = os.WriteFile(p, []byte(`{"imds":{"http_stack":"iis"}}`), 0o600)
	if _, err := loadConfig(p); err == nil || !strings.Contains(err.Error(), "http_stack") {
		t.Errorf("unknown stack: %v", err)
	}
}
