package main

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// Assertion checks, in order: well-formed; alg RS256 or PS256; x5t#S256 and/or x5t match the
// registered certificate; x5c (if present) holds that certificate; signature; aud; iss and sub;
// exp in the future; nbf at most 5 minutes ahead; jti present.

const nbfSkew = 5 * time.Minute

func invalidAssertion(format string, args ...any) *aadFailure {
	return failure(401, "invalid_client", 50027, "JWT token is invalid or malformed. [Reason - "+format+"]", args...)
}

func keyNotFound(app *aadApp, presented string) *aadFailure {
	return failure(401, "invalid_client", 700027,
		"The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '%s', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '%s'. Review the documentation at https://docs.microsoft.com/en-us/graph/deployguide/graph-explorer to learn more.]",
		presented, app.ClientID)
}

func verifyAssertion(tr *tokenRequest, app *aadApp, audiences []string, now time.Time) *aadFailure {
	if tr.parseErr != nil || tr.parsed == nil {
		return invalidAssertion("%v", tr.parseErr)
	}
	p := tr.parsed
	alg, _ := p.Header["alg"].(string)
	if alg != "RS256" && alg != "PS256" {
		return failure(401, "invalid_client", 5002738,
			"Invalid JWT token. '%s' is not a supported signature algorithm. Supported signing algorithms are: 'RS256,RS384,RS512,PS256'", alg)
	}
	if app.cert == nil {
		return failure(401, "invalid_client", 700027,
			"Client assertion failed signature validation. [Reason - The key was not found., Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '%s'.]", app.ClientID)
	}
	checked := false
	for _, th := range []struct {
		name string
		want []byte
	}{{"x5t#S256", app.sha256}, {"x5t", app.sha1}} {
		raw, present := p.Header[th.name]
		if !present {
			continue
		}
		s, _ := raw.(string)
		got, err := decodeB64Any(s)
		if err != nil || !bytes.Equal(got, th.want) {
			shown := strings.ToUpper(hex.EncodeToString(got))
			if err != nil {
				shown = s
			}
			return keyNotFound(app, shown)
		}
		checked = true
	}
	if !checked {
		return failure(401, "invalid_client", 700027,
			"Client assertion failed signature validation. [Reason - The key was not found. The assertion header has neither x5t nor x5t#S256.]")
	}
	if raw, present := p.Header["x5c"]; present {
		chain, _ := raw.([]any)
		var leaf []byte
		if len(chain) > 0 {
			s, _ := chain[0].(string)
			leaf, _ = decodeB64Any(s)
		}
		if !bytes.Equal(leaf, app.cert.Raw) {
			return failure(401, "invalid_client", 700027,
				"Client assertion failed signature validation. [Reason - The certificate in the x5c header is not the registered certificate.]")
		}
	}
	pub, ok := app.cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return failure(401, "invalid_client", 700027, "Client assertion failed signature validation. [Reason - The registered key is not an RSA key.]")
	}
	digest := sha256.Sum256([]byte(p.SigningInput))
	var err error
	if alg == "RS256" {
		err = rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], p.Signature)
	} else {
		err = rsa.VerifyPSS(pub, crypto.SHA256, digest[:], p.Signature, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	}
	if err != nil {
		return failure(401, "invalid_client", 700027,
			"Client assertion contains an invalid signature. [Reason - The key used is not the one that signed the assertion, Thumbprint of key used by client: '%s']",
			strings.ToUpper(hex.EncodeToString(app.sha1)))
	}
	if f := checkAudience(p.Claims["aud"], audiences); f != nil {
		return f
	}
	iss, sub := stringClaim(p.Claims, "iss"), stringClaim(p.Claims, "sub")
	if iss != app.ClientID || sub != app.ClientID {
		return failure(401, "invalid_client", 700021,
			"Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials . [iss '%s', sub '%s', client_id '%s']",
			iss, sub, app.ClientID)
	}
	exp, present, ok := numericClaim(p.Claims, "exp")
	if !present || !ok {
		return invalidAssertion("the exp claim is missing or not a number")
	}
	nbf, nbfPresent, nbfOK := numericClaim(p.Claims, "nbf")
	if nbfPresent && !nbfOK {
		return invalidAssertion("the nbf claim is not a number")
	}
	nowS := float64(now.UnixNano()) / 1e9
	if exp <= nowS || (nbfPresent && nbf > nowS+nbfSkew.Seconds()) {
		return failure(401, "invalid_client", 700024,
			"Client assertion is not within its valid time range. Current time: %s, assertion valid from %s, expiry time of assertion %s. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials .",
			now.UTC().Format("2006-01-02T15:04:05.0000000Z"), fmtEpoch(nbf, nbfPresent), fmtEpoch(exp, true))
	}
	if jti := stringClaim(p.Claims, "jti"); jti == "" {
		return invalidAssertion("the jti claim is missing")
	}
	return nil
}

func fmtEpoch(v float64, present bool) string {
	if !present {
		return "(none)"
	}
	return time.Unix(int64(v), 0).UTC().Format("2006-01-02T15:04:05.0000000Z")
}

func checkAudience(raw any, audiences []string) *aadFailure {
	var got []string
	switch t := raw.(type) {
	case string:
		got = []string{t}
	case []any:
		for _, x := range t {
			if s, ok := x.(string); ok {
				got = append(got, s)
			}
		}
	}
	for _, g := range got {
		for _, want := range audiences {
			if g == want {
				return nil
			}
		}
	}
	return failure(401, "invalid_client", 50013,
		"Assertion audience claim does not match the required value. The audience in the assertion was '%s' and the expected audience is '%s' or one of the Application Ids of this application.",
		strings.Join(got, ","), audiences[0])
}
