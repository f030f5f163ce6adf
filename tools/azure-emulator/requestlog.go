package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// LogHeaders holds the request headers the log keeps.
type LogHeaders struct {
	Metadata      []string `json:"Metadata"` // every value received, in order; [] if absent
	XForwardedFor []string `json:"X-Forwarded-For,omitempty"`
	UserAgent     string   `json:"User-Agent,omitempty"`
	ContentType   string   `json:"Content-Type,omitempty"`
	Authorization string   `json:"Authorization,omitempty"` // the scheme only
}

// AssertionInfo is what the log keeps of a client assertion: never the signature.
type AssertionInfo struct {
	Header map[string]any `json:"header,omitempty"`
	Claims map[string]any `json:"claims,omitempty"`
	Error  string         `json:"error,omitempty"` // why it could not be decoded
}

// LogEntry is one request received by a listener.
type LogEntry struct {
	Seq        int64               `json:"seq"`
	Time       string              `json:"time"`
	Listener   string              `json:"listener"`
	Method     string              `json:"method"`
	RawTarget  string              `json:"raw_target"`
	Path       string              `json:"path"`
	Query      map[string][]string `json:"query"`
	Proto      string              `json:"proto"`
	Host       string              `json:"host"`
	Headers    LogHeaders          `json:"headers"`
	RemoteAddr string              `json:"remote_addr"`
	Status     int                 `json:"status"`    // 0 while in flight or when no answer was sent
	Completed  bool                `json:"completed"` // false while the request is in flight
	DurationMS float64             `json:"duration_ms"`
	Route      string              `json:"route,omitempty"`
	ClientID   string              `json:"client_id,omitempty"`
	Tenant     string              `json:"tenant,omitempty"`
	Error      string              `json:"error,omitempty"`
	Fault      string              `json:"fault,omitempty"`
	// AAD token requests only.
	Form             map[string][]string `json:"form,omitempty"`
	SecretPresent    *bool               `json:"secret_present,omitempty"`
	BasicAuth        *bool               `json:"basic_auth,omitempty"`
	AssertionPresent *bool               `json:"assertion_present,omitempty"`
	Assertion        *AssertionInfo      `json:"assertion,omitempty"`
	// Proxy only.
	Upstream string `json:"upstream,omitempty"`

	start time.Time
}

// RequestLog keeps every request in memory and appends finished ones to a JSON-lines file.
type RequestLog struct {
	mu      sync.Mutex
	seq     int64
	entries []*LogEntry
	file    *os.File
	fileMu  sync.Mutex
}

const maxLogEntries = 100000

func newRequestLog(path string) (*RequestLog, error) {
	l := &RequestLog{}
	if path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		l.file = f
	}
	return l, nil
}

func (l *RequestLog) Close() {
	if l.file != nil {
		_ = l.file.Close()
	}
}

type logCtxKey struct{}

type logRef struct {
	log   *RequestLog
	entry *LogEntry
}

// annotate changes the log entry of the request being served (no-op outside Wrap).
func annotate(r *http.Request, f func(e *LogEntry)) {
	ref, ok := r.Context().Value(logCtxKey{}).(logRef)
	if !ok {
		return
	}
	ref.log.mu.Lock()
	defer ref.log.mu.Unlock()
	f(ref.entry)
}

func (l *RequestLog) begin(listener string, r *http.Request) *LogEntry {
	now := time.Now()
	_, rawQuery := splitTarget(r.RequestURI)
	pairs, _ := parseQuery(rawQuery)
	e := &LogEntry{
		Time:       now.UTC().Format(time.RFC3339Nano),
		Listener:   listener,
		Method:     r.Method,
		RawTarget:  r.RequestURI,
		Path:       requestPath(r),
		Query:      queryMap(pairs),
		Proto:      r.Proto,
		Host:       r.Host,
		RemoteAddr: r.RemoteAddr,
		start:      now,
	}
	if r.Method == http.MethodConnect {
		e.Path, e.Query = "", map[string][]string{}
	}
	e.Headers.Metadata = append([]string{}, r.Header.Values("Metadata")...)
	if v, ok := r.Header["X-Forwarded-For"]; ok {
		e.Headers.XForwardedFor = append([]string{}, v...)
	}
	e.Headers.UserAgent = r.Header.Get("User-Agent")
	e.Headers.ContentType = r.Header.Get("Content-Type")
	if a := r.Header.Get("Authorization"); a != "" {
		scheme, _, _ := strings.Cut(a, " ")
		e.Headers.Authorization = scheme + " [redacted]"
	}
	l.mu.Lock()
	l.seq++
	e.Seq = l.seq
	l.entries = append(l.entries, e)
	if len(l.entries) > maxLogEntries {
		l.entries = l.entries[len(l.entries)-maxLogEntries:]
	}
	l.mu.Unlock()
	return e
}

func (l *RequestLog) finish(e *LogEntry, status int) {
	l.mu.Lock()
	if e.Status == 0 {
		e.Status = status
	}
	e.Completed = true
	e.DurationMS = float64(time.Since(e.start).Microseconds()) / 1000
	line, _ := json.Marshal(e)
	l.mu.Unlock()
	if l.file != nil {
		l.fileMu.Lock()
		_, _ = l.file.Write(append(line, '\n'))
		l.fileMu.Unlock()
	}
}

// Record logs a request that was answered without reaching any handler (the Windows stack's own
// refusals), as one finished entry.
func (l *RequestLog) Record(listener string, r *http.Request, status int, route, msg string) {
	e := l.begin(listener, r)
	l.mu.Lock()
	e.Route, e.Error = route, msg
	l.mu.Unlock()
	l.finish(e, status)
}

// Snapshot returns the log as JSON, optionally only one listener's entries.
func (l *RequestLog) Snapshot(listener string) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*LogEntry, 0, len(l.entries))
	for _, e := range l.entries {
		if listener == "" || e.Listener == listener {
			out = append(out, e)
		}
	}
	return marshalJSON(out)
}

func (l *RequestLog) Clear() {
	l.mu.Lock()
	l.entries = nil
	l.mu.Unlock()
}

// statusRecorder remembers the status a handler sent.
type statusRecorder struct {
	http.ResponseWriter
	status   int
	hijacked bool
	noAnswer bool // the handler deliberately sent nothing (hang fault)
}

// markNoAnswer records that the handler sends no response at all.
func markNoAnswer(w http.ResponseWriter) {
	if rec, ok := w.(*statusRecorder); ok {
		rec.noAnswer = true
	}
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	s.hijacked = true
	return http.NewResponseController(s.ResponseWriter).Hijack()
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Wrap logs every request that reaches h. The entry is visible (completed=false) while the
// request is in flight.
func (l *RequestLog) Wrap(listener string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := l.begin(listener, r)
		rec := &statusRecorder{ResponseWriter: w}
		ctx := context.WithValue(r.Context(), logCtxKey{}, logRef{l, e})
		defer func() {
			status := rec.status
			if status == 0 && !rec.hijacked && !rec.noAnswer && r.Context().Err() == nil {
				status = http.StatusOK // the server sends 200 for a handler that wrote nothing
			}
			l.finish(e, status)
		}()
		h.ServeHTTP(rec, r.WithContext(ctx))
	})
}
