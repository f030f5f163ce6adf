package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// aadFailure is an Azure AD error answer: HTTP status, OAuth error code, AADSTS number and
// message (without the "AADSTSnnn: " prefix and the trace suffix).
type aadFailure struct {
	Status  int
	Code    string
	AADSTS  int
	Message string
}

func (f *aadFailure) Error() string {
	return fmt.Sprintf("%d %s AADSTS%d: %s", f.Status, f.Code, f.AADSTS, f.Message)
}

func failure(status int, code string, aadsts int, format string, args ...any) *aadFailure {
	return &aadFailure{status, code, aadsts, fmt.Sprintf(format, args...)}
}

type aadErrorBody struct {
	Error         string `json:"error"`
	Description   string `json:"error_description"`
	ErrorCodes    []int  `json:"error_codes"`
	Timestamp     string `json:"timestamp"`
	TraceID       string `json:"trace_id"`
	CorrelationID string `json:"correlation_id"`
	ErrorURI      string `json:"error_uri"`
}

var guidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// correlationID echoes the client's client-request-id when it is a GUID, like Azure AD.
func correlationID(r *http.Request) string {
	if c := r.Header.Get("client-request-id"); guidRE.MatchString(c) {
		return strings.ToLower(c)
	}
	return newGUID()
}

// aadHeaders sets the headers Azure AD sends with every token-endpoint answer.
func aadHeaders(w http.ResponseWriter, r *http.Request, trace string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store, no-cache")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("x-ms-request-id", trace)
	if c := r.Header.Get("client-request-id"); c != "" {
		h.Set("client-request-id", c)
	}
}

func (f *aadFailure) body(r *http.Request, now time.Time) aadErrorBody {
	trace, corr := newGUID(), correlationID(r)
	ts := now.UTC().Format("2006-01-02 15:04:05Z")
	return aadErrorBody{
		Error: f.Code,
		Description: fmt.Sprintf("AADSTS%d: %s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s",
			f.AADSTS, f.Message, trace, corr, ts),
		ErrorCodes:    []int{f.AADSTS},
		Timestamp:     ts,
		TraceID:       trace,
		CorrelationID: corr,
		ErrorURI:      fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", f.AADSTS),
	}
}

func (a *AAD) writeFailure(w http.ResponseWriter, r *http.Request, f *aadFailure) {
	b := f.body(r, a.now())
	annotate(r, func(e *LogEntry) { e.Error = f.Error() })
	aadHeaders(w, r, b.TraceID)
	writeJSON(w, f.Status, b)
}

func (a *AAD) faultBody(status int) []byte {
	code, aadsts, msg := "server_error", 90033, "A transient error has occurred. Please try again."
	switch {
	case status == 429:
		code, aadsts, msg = "temporarily_unavailable", 90055, "Too many requests. Please retry later."
	case status == 503 || status == 504:
		code = "temporarily_unavailable"
	case status >= 400 && status < 500:
		code, aadsts, msg = "invalid_request", 9002313, "Invalid request. Request is malformed or invalid."
	}
	f := &aadFailure{status, code, aadsts, msg}
	return marshalJSON(f.body(&http.Request{Header: http.Header{}}, a.now()))
}
