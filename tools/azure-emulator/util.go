package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// newGUID returns a random version-4 GUID in its canonical lower-case form.
func newGUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return formatGUID(b[:])
}

// stableGUID derives a GUID deterministically from a namespace and a name (SHA-256 based,
// version bits set to 5-like so it looks like a name-based GUID).
func stableGUID(namespace, name string) string {
	sum := sha256.Sum256([]byte(namespace + "\x00" + strings.ToLower(name)))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return formatGUID(b)
}

func formatGUID(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// marshalJSON encodes v without HTML escaping and without a trailing newline, the way a
// non-Go service would write it.
func marshalJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return bytes.TrimRight(buf.Bytes(), "\n")
}

// writeJSON writes a JSON response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body := marshalJSON(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// splitTarget splits a request-target into its raw path and raw query. Absolute-form targets
// (http://host/path) are reduced to their path.
func splitTarget(target string) (rawPath, rawQuery string) {
	rawPath = target
	if i := strings.IndexByte(target, '?'); i >= 0 {
		rawPath, rawQuery = target[:i], target[i+1:]
	}
	if i := strings.IndexByte(rawPath, '#'); i >= 0 {
		rawPath = rawPath[:i]
	}
	if !strings.HasPrefix(rawPath, "/") {
		if j := strings.Index(rawPath, "://"); j >= 0 {
			rest := rawPath[j+3:]
			if k := strings.IndexByte(rest, '/'); k >= 0 {
				rawPath = rest[k:]
			} else {
				rawPath = "/"
			}
		}
	}
	return rawPath, rawQuery
}

// queryPair is one name=value pair of a query string, in order of appearance.
type queryPair struct {
	Name, Value string
}

// parseQuery splits a raw query on '&' only (a ';' is data, as for most non-Go servers) and
// decodes names and values. It returns every pair, including duplicates; err is set if an
// escape sequence is invalid (the pair is then kept undecoded).
func parseQuery(raw string) (pairs []queryPair, err error) {
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		name, value, _ := strings.Cut(part, "=")
		n, e1 := url.QueryUnescape(name)
		v, e2 := url.QueryUnescape(value)
		if e1 != nil || e2 != nil {
			if err == nil {
				err = fmt.Errorf("invalid escape in query parameter %q", name)
			}
			n, v = name, value
		}
		pairs = append(pairs, queryPair{n, v})
	}
	return pairs, err
}

// queryMap groups pairs by name, keeping every value.
func queryMap(pairs []queryPair) map[string][]string {
	m := make(map[string][]string, len(pairs))
	for _, p := range pairs {
		m[p.Name] = append(m[p.Name], p.Value)
	}
	return m
}

// firstDuplicate returns the first name that occurs more than once, or "".
func firstDuplicate(pairs []queryPair) string {
	seen := make(map[string]bool, len(pairs))
	for _, p := range pairs {
		if seen[p.Name] {
			return p.Name
		}
		seen[p.Name] = true
	}
	return ""
}
