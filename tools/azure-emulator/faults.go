package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Fault is one injected misbehaviour of a listener's token endpoint (POST /faults body).
type Fault struct {
	Target      string            `json:"target"`                 // "imds" or "aad"
	Status      int               `json:"status,omitempty"`       // answer with this status (0: answer normally)
	Count       int               `json:"count,omitempty"`        // requests affected; 0 = until cleared or for_seconds passes
	ForSeconds  float64           `json:"for_seconds,omitempty"`  // active for this long from now
	RetryAfter  string            `json:"retry_after,omitempty"`  // Retry-After header value
	LatencyMS   int               `json:"latency_ms,omitempty"`   // delay before answering
	Hang        bool              `json:"hang,omitempty"`         // never answer (until the client goes away)
	Body        *string           `json:"body,omitempty"`         // body for status; default: an error in the listener's style
	ContentType string            `json:"content_type,omitempty"` // default: JSON if body parses as JSON, else text/plain
	Headers     map[string]string `json:"headers,omitempty"`

	ID        int       `json:"id"`
	Remaining int       `json:"remaining,omitempty"` // requests left (when count > 0)
	Until     time.Time `json:"until,omitzero"`      // end (when for_seconds > 0)
	Hits      int       `json:"hits"`
}

func (f *Fault) describe() string {
	var parts []string
	if f.Hang {
		parts = append(parts, "hang")
	}
	if f.LatencyMS > 0 {
		parts = append(parts, fmt.Sprintf("latency %dms", f.LatencyMS))
	}
	if f.Status != 0 {
		parts = append(parts, fmt.Sprintf("status %d", f.Status))
	}
	return fmt.Sprintf("fault #%d: %s", f.ID, strings.Join(parts, ", "))
}

// Faults holds, per target, a queue of faults consumed in order: a request gets the first
// active fault of its target's queue.
type Faults struct {
	mu     sync.Mutex
	nextID int
	queues map[string][]*Fault
}

func newFaults() *Faults { return &Faults{queues: map[string][]*Fault{}} }

func (fs *Faults) Add(f Fault, now time.Time) (Fault, error) {
	if f.Target != "imds" && f.Target != "aad" {
		return f, fmt.Errorf(`target must be "imds" or "aad"`)
	}
	if f.Status != 0 && (f.Status < 100 || f.Status > 999) {
		return f, fmt.Errorf("status %d out of range", f.Status)
	}
	if f.Status == 0 && !f.Hang && f.LatencyMS <= 0 {
		return f, fmt.Errorf("a fault needs status, hang or latency_ms")
	}
	if f.Count < 0 || f.LatencyMS < 0 || f.ForSeconds < 0 {
		return f, fmt.Errorf("count, latency_ms and for_seconds must not be negative")
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.nextID++
	f.ID = fs.nextID
	f.Remaining = f.Count
	if f.ForSeconds > 0 {
		f.Until = now.Add(time.Duration(f.ForSeconds * float64(time.Second)))
	}
	fs.queues[f.Target] = append(fs.queues[f.Target], &f)
	return f, nil
}

// Next consumes and returns the fault for the next request to target, or nil.
func (fs *Faults) Next(target string, now time.Time) *Fault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	q := fs.queues[target]
	for len(q) > 0 {
		f := q[0]
		if !f.Until.IsZero() && !now.Before(f.Until) {
			q = q[1:]
			continue
		}
		f.Hits++
		cp := *f
		if f.Count > 0 {
			f.Remaining--
			if f.Remaining == 0 {
				q = q[1:]
			}
		}
		fs.queues[target] = q
		return &cp
	}
	fs.queues[target] = q
	return nil
}

// Clear removes the faults of target ("" = all).
func (fs *Faults) Clear(target string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if target == "" {
		fs.queues = map[string][]*Fault{}
	} else {
		delete(fs.queues, target)
	}
}

func (fs *Faults) List() []Fault {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	out := []Fault{}
	for _, t := range []string{"imds", "aad"} {
		for _, f := range fs.queues[t] {
			out = append(out, *f)
		}
	}
	return out
}

// apply carries out a fault. It returns true when the request has been dealt with (answered,
// or deliberately left unanswered) and false when normal handling should go on.
// defaultBody makes the body of a status fault that has none configured.
func (f *Fault) apply(w http.ResponseWriter, r *http.Request, quit <-chan struct{},
	defaultBody func(status int) []byte) bool {
	annotate(r, func(e *LogEntry) { e.Fault = f.describe() })
	if f.LatencyMS > 0 {
		t := time.NewTimer(time.Duration(f.LatencyMS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			annotate(r, func(e *LogEntry) { e.Error = "client went away during injected latency" })
			markNoAnswer(w)
			return true
		case <-quit:
			markNoAnswer(w)
			return true
		}
	}
	if f.Hang {
		markNoAnswer(w)
		select {
		case <-r.Context().Done():
			annotate(r, func(e *LogEntry) { e.Error = "hang: client went away" })
		case <-quit:
			annotate(r, func(e *LogEntry) { e.Error = "hang: emulator stopping" })
		}
		return true
	}
	if f.Status == 0 {
		return false
	}
	for k, v := range f.Headers {
		w.Header().Set(k, v)
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	var body []byte
	if f.Body != nil {
		body = []byte(*f.Body)
	} else {
		body = defaultBody(f.Status)
	}
	ct := f.ContentType
	if ct == "" {
		if json.Valid(body) {
			ct = "application/json; charset=utf-8"
		} else {
			ct = "text/plain; charset=utf-8"
		}
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(f.Status)
	_, _ = w.Write(body)
	annotate(r, func(e *LogEntry) { e.Error = "injected " + http.StatusText(f.Status) })
	return true
}
