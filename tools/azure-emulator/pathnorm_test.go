package main

import "testing"

func TestNormalizePath(t *testing.T) {
	cases := map[string]string{
		"":                                    "/",
		"/":                                   "/",
		"/metadata/identity/oauth2/token":     "/metadata/identity/oauth2/token",
		"/metadata/identity/oauth2/token/":    "/metadata/identity/oauth2/token",
		`/METADATA//identity\oauth2\token/`:   "/METADATA/identity/oauth2/token",
		"/metadata/identity%2Foauth2%2ftoken": "/metadata/identity/oauth2/token",
		"/metadata/identity%5Coauth2%5ctoken": "/metadata/identity/oauth2/token",
		"/a/../metadata/./identity/x/../oauth2//token": "/metadata/identity/oauth2/token",
		"/../../metadata":               "/metadata",
		"/metadata/%zz/%4":              "/metadata/%zz/%4",
		"/%2e%2e/metadata/%2E/instance": "/metadata/instance",
	}
	for in, want := range cases {
		if got := normalizePath(in); got != want {
			t.Errorf("normalizePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitTargetAndQuery(t *testing.T) {
	p, q := splitTarget("http://169.254.169.254/metadata/x?a=1&a=2")
	if p != "/metadata/x" || q != "a=1&a=2" {
		t.Fatalf("absolute form: %q %q", p, q)
	}
	pairs, err := parseQuery("a=1&b=x%20y&a=2&c;d=3&&e")
	if err != nil {
		t.Fatal(err)
	}
	m := queryMap(pairs)
	if len(m["a"]) != 2 || m["b"][0] != "x y" || m["c;d"][0] != "3" || len(m["e"]) != 1 {
		t.Fatalf("parseQuery: %v", m)
	}
	if d := firstDuplicate(pairs); d != "a" {
		t.Fatalf("firstDuplicate = %q", d)
	}
	if _, err := parseQuery("a=%zz"); err == nil {
		t.Fatal("bad escape accepted")
	}
}
