// Command client is nmi's end-to-end client for Go: azidentity asks IMDS (169.254.169.254, which
// azidentity cannot override) for a token and prints one JSON line with the decoded claims, never
// the token itself.
//
// usage: client --credential managed|default [--client-id ID] --resource URL|SCOPE
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azlog "github.com/Azure/azure-sdk-for-go/sdk/azcore/log"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

func claimsOf(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("the access token is not a JWT")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil, fmt.Errorf("JWT payload: %w", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		return nil, fmt.Errorf("JWT payload: %w", err)
	}
	return claims, nil
}

func sdkVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/Azure/azure-sdk-for-go/sdk/azidentity" {
				return dep.Version
			}
		}
	}
	return ""
}

func getToken(kind, clientID, scope string) (azcore.AccessToken, error) {
	var cred azcore.TokenCredential
	var err error
	if kind == "managed" {
		opts := &azidentity.ManagedIdentityCredentialOptions{}
		if clientID != "" {
			opts.ID = azidentity.ClientID(clientID)
		}
		cred, err = azidentity.NewManagedIdentityCredential(opts)
	} else {
		// Go's DefaultAzureCredential has no option for this: its managed identity takes the
		// client id from AZURE_CLIENT_ID (the environment credential needs a tenant and a
		// secret as well, so it stays unavailable).
		if clientID != "" {
			if err := os.Setenv("AZURE_CLIENT_ID", clientID); err != nil {
				return azcore.AccessToken{}, err
			}
		}
		cred, err = azidentity.NewDefaultAzureCredential(nil)
	}
	if err != nil {
		return azcore.AccessToken{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	return cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope}})
}

func main() {
	kind := flag.String("credential", "", "managed or default")
	clientID := flag.String("client-id", "", "user-assigned identity's client id (optional)")
	resource := flag.String("resource", "", "resource URL or scope")
	flag.Parse()

	out := map[string]any{"sdk": "go", "credential": *kind, "version": sdkVersion()}
	// Which credential of DefaultAzureCredential's chain produced the token: only the chain's
	// "<chain> authenticated with <credential>" event is looked at, nothing is printed.
	var chosen string
	azlog.SetEvents(azidentity.EventAuthentication)
	azlog.SetListener(func(_ azlog.Event, msg string) {
		if _, name, found := strings.Cut(msg, " authenticated with "); found {
			chosen = name
		}
	})
	start := time.Now()
	err := func() error {
		if *kind != "managed" && *kind != "default" {
			return errors.New("--credential must be managed or default")
		}
		if *resource == "" {
			return errors.New("--resource is required")
		}
		scope := *resource
		if !strings.HasSuffix(scope, "/.default") {
			scope += "/.default"
		}
		tok, err := getToken(*kind, *clientID, scope)
		if err != nil {
			return err
		}
		claims, err := claimsOf(tok.Token)
		if err != nil {
			return err
		}
		out["claims"] = claims
		out["expires_on"] = tok.ExpiresOn.Unix()
		if *kind == "default" {
			out["chosen"] = chosen
		}
		return nil
	}()
	out["ok"] = err == nil
	if err != nil {
		out["error"] = err.Error()
	}
	out["elapsed_ms"] = time.Since(start).Milliseconds()
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
	if err != nil {
		os.Exit(1)
	}
}
