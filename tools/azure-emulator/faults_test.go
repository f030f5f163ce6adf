package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestFaultQueue(t *testing.T) {
	fs := newFaults()
	now := time.Now()
	if _, err := fs.Add(Fault{Target: "nope", Status: 500}, now); err == nil {
		t.Error("bad target accepted")
	}
	if _, err := fs.Add(Fault{Target: "imds"}, now); err == nil {
		t.Error("empty fault accepted")
	}
	mustAdd := func(f Fault) {
		if _, err := fs.Add(f, now); err != nil {
			t.Fatal(err)
		}
	}
	mustAdd(Fault{Target: "imds", Status: 500, Count: 2})
	mustAdd(Fault{Target: "imds", Status: 429, Count: 1})
	mustAdd(Fault{Target: "imds", Status: 410, ForSeconds: 5})
	var got []int
	for i := 0; i < 4; i++ {
		got = append(got, fs.Next("imds", now).Status)
	}
	if got[0] != 500 || got[1] != 500 || got[2] != 429 || got[3] != 410 {
		t.Fatalf("order %v", got)
	}
	if fs.Next("aad", now) != nil {
		t.Fatal("aad got an imds fault")
	}
	if f := fs.Next("imds", now.Add(4*time.Second)); f == nil || f.Status != 410 {
		t.Fatal("410 ended early")
	}
	if f := fs.Next("imds", now.Add(5*time.Second)); f != nil {
		t.Fatalf("410 still active: %+v", f)
	}
	mustAdd(Fault{Target: "aad", Status: 503})
	for i := 0; i < 3; i++ {
		if f := fs.Next("aad", now); f == nil || f.Status != 503 {
			t.Fatal("count 0 must last until cleared")
		}
	}
	fs.Clear("aad")
	if fs.Next("aad", now) != nil {
		t.Fatal("not cleared")
	}
}

func TestIMDSFaults(t *testing.T) {
	f := newIMDSFixture(t, defaultIMDSConfig())
	add := func(fl Fault) {
		t.Helper()
		fl.Target = "imds"
		if _, err := f.faults.Add(fl, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	// 500 twice, with Retry-After, then normal service.
	add(Fault{Status: 500, Count: 2, RetryAfter: "2"})
	for i := 0; i < 3; i++ {
		resp, body := rawGet(t, f.srv, tokenQ, "Metadata: true")
		want := 500
		if i == 2 {
			want = 200
		}
		if resp.StatusCode != want {
			t.Fatalf("request %d: %d %s", i, resp.StatusCode, body)
		}
		if i < 2 && (resp.Header.Get("Retry-After") != "2" || !strings.Contains(body, `"error":"server_error"`)) {
			t.Errorf("fault answer: %v %s", resp.Header, body)
		}
	}
	// Faults only hit the token endpoint.
	add(Fault{Status: 503, Count: 1})
	if resp, _ := rawGet(t, f.srv, "/metadata/versions", "Metadata: true"); resp.StatusCode != 200 {
		t.Errorf("versions got the fault: %d", resp.StatusCode)
	}
	if resp, _ := rawGet(t, f.srv, tokenQ, "Metadata: true"); resp.StatusCode != 503 {
		t.Errorf("503 fault: %d", resp.StatusCode)
	}
	// 410 for a while.
	add(Fault{Status: 410, ForSeconds: 0.5})
	if resp, _ := rawGet(t, f.srv, tokenQ, "Metadata: true"); resp.StatusCode != 410 {
		t.Errorf("410: %d", resp.StatusCode)
	}
	if resp, _ := rawGet(t, f.srv, tokenQ, "Metadata: true"); resp.StatusCode != 410 {
		t.Errorf("410 (2nd): %d", resp.StatusCode)
	}
	time.Sleep(600 * time.Millisecond)
	if resp, _ := rawGet(t, f.srv, tokenQ, "Metadata: true"); resp.StatusCode != 200 {
		t.Errorf("after 410 window: %d", resp.StatusCode)
	}
	// Custom body.
	add(Fault{Status: 404, Count: 1, Body: new("IMDS is updating")})
	resp, body := rawGet(t, f.srv, tokenQ, "Metadata: true")
	if resp.StatusCode != 404 || body != "IMDS is updating" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("custom body: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	// Latency delays a normal answer.
	add(Fault{LatencyMS: 300, Count: 1})
	start := time.Now()
	resp, _ = rawGet(t, f.srv, tokenQ, "Metadata: true")
	if el := time.Since(start); resp.StatusCode != 200 || el < 300*time.Millisecond {
		t.Errorf("latency: %d after %v", resp.StatusCode, el)
	}
	// Hang: no answer until the client gives up; the log shows the request without a status.
	f.log.Clear()
	add(Fault{Hang: true, Count: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+tokenQ, nil)
	req.Header.Set("Metadata", "true")
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("hang answered %d", resp.StatusCode)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		e := logEntries(t, f.log)
		if len(e) == 1 && e[0].Completed {
			if e[0].Status != 0 || !strings.Contains(e[0].Fault, "hang") {
				t.Errorf("hang log entry %+v", e[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hang not finished in the log: %+v", e)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resp, _ := rawGet(t, f.srv, tokenQ, "Metadata: true"); resp.StatusCode != 200 {
		t.Errorf("after hang: %d", resp.StatusCode)
	}
}

func TestAADFaults(t *testing.T) {
	f := newAADFixture(t)
	if _, err := f.faults.Add(Fault{Target: "aad", Status: 503, Count: 1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	path := "/" + spTenant + "/oauth2/token"
	st, b := f.post(t, path, secretForm(spClient, spSecret, "r"))
	checkAADError(t, "aad fault", st, b, 503, "temporarily_unavailable", 90033)
	if st, _ := f.post(t, path, secretForm(spClient, spSecret, "r")); st != 200 {
		t.Errorf("after fault: %d", st)
	}
	e := logEntries(t, f.log)
	if !strings.Contains(e[0].Fault, "status 503") || e[0].Form["client_id"][0] != spClient {
		t.Errorf("log %+v", e[0])
	}
}
