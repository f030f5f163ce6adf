package main

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Signer issues the RS256 access tokens. Its key is generated at start and published (with a
// self-signed certificate, as Azure AD does) as a JWKS.
type Signer struct {
	key     *rsa.PrivateKey
	certDER []byte
	kid     string // = x5t, as in Azure AD's v1 keys
	x5t     string
}

func newSigner() (*Signer, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "accounts.accesscontrol.windows.net (azure-emulator)"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(5, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	sum := sha1.Sum(der)
	x5t := base64.RawURLEncoding.EncodeToString(sum[:])
	return &Signer{key: key, certDER: der, kid: x5t, x5t: x5t}, nil
}

type jwtHeader struct {
	Typ string `json:"typ"`
	Alg string `json:"alg"`
	X5t string `json:"x5t"`
	Kid string `json:"kid"`
}

// Sign returns a compact RS256 JWS of claims.
func (s *Signer) Sign(claims map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString(marshalJSON(jwtHeader{"JWT", "RS256", s.x5t, s.kid}))
	c := base64.RawURLEncoding.EncodeToString(marshalJSON(claims))
	input := h + "." + c
	digest := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, digest[:])
	if err != nil {
		panic(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// JWKS returns the JSON Web Key Set holding the signing key.
func (s *Signer) JWKS() map[string]any {
	pub := s.key.PublicKey
	return map[string]any{"keys": []map[string]any{{
		"kty": "RSA",
		"use": "sig",
		"alg": "RS256",
		"kid": s.kid,
		"x5t": s.x5t,
		"n":   base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e":   base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		"x5c": []string{base64.StdEncoding.EncodeToString(s.certDER)},
	}}}
}

// decodeB64Any decodes base64 in either alphabet, padded or not (whitespace not allowed).
func decodeB64Any(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	s = strings.NewReplacer("+", "-", "/", "_").Replace(s)
	return base64.RawURLEncoding.DecodeString(s)
}

// parsedJWT is a compact JWS split into its parts; nothing is verified yet.
type parsedJWT struct {
	Header       map[string]any
	Claims       map[string]any
	SigningInput string
	Signature    []byte
}

func decodeJSONObject(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("not a JSON object")
	}
	return m, nil
}

// parseJWT splits and decodes a compact JWS (the three parts must be base64url; padding is
// tolerated).
func parseJWT(tok string) (*parsedJWT, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("a JWS has 3 parts, got %d", len(parts))
	}
	hb, err := decodeB64Any(parts[0])
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	cb, err := decodeB64Any(parts[1])
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	sig, err := decodeB64Any(parts[2])
	if err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	p := &parsedJWT{SigningInput: parts[0] + "." + parts[1], Signature: sig}
	if p.Header, err = decodeJSONObject(hb); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if p.Claims, err = decodeJSONObject(cb); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return p, nil
}

// numericClaim returns a NumericDate claim in seconds; ok is false when absent or not a number.
func numericClaim(m map[string]any, name string) (v float64, present, ok bool) {
	raw, present := m[name]
	if !present {
		return 0, false, false
	}
	n, isNum := raw.(json.Number)
	if !isNum {
		return 0, true, false
	}
	f, err := n.Float64()
	return f, true, err == nil
}

func stringClaim(m map[string]any, name string) string {
	s, _ := m[name].(string)
	return s
}
