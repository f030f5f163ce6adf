package main

import "strings"

// normalizePath turns a raw request path into the canonical form used for routing, as
// leniently as the real IMDS front end does: percent-escapes are decoded once (invalid ones
// are kept literally), '\' is a separator, empty and "." segments are dropped, ".." removes
// the previous segment (never above the root) and a trailing slash is ignored. The result
// always starts with "/" and never ends with one (except for the root itself). Letter case is
// preserved; callers compare case-insensitively where they need to.
func normalizePath(raw string) string {
	s := strings.ReplaceAll(lenientUnescape(raw), `\`, "/")
	var out []string
	for _, seg := range strings.Split(s, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/")
}

// lenientUnescape decodes %XX escapes once; a '%' not followed by two hex digits is kept.
// '+' is not special in paths.
func lenientUnescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// pathSegments splits a normalised path into its segments ("/" yields none).
func pathSegments(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}
