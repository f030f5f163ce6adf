package main

import (
	"crypto/subtle"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

const jwtBearerType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// tokenRequest is what the token endpoint reads from a request.
type tokenRequest struct {
	form          url.Values
	clientID      string
	secret        string
	secretGiven   bool
	basic         bool
	assertion     string
	assertionType string
	parsed        *parsedJWT
	parseErr      error
}

func readTokenRequest(w http.ResponseWriter, r *http.Request) (*tokenRequest, *aadFailure) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		return nil, failure(400, "invalid_request", 9002313, "Invalid request. Request is malformed or invalid.")
	}
	tr := &tokenRequest{form: url.Values{}}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt == "application/x-www-form-urlencoded" {
		if tr.form, err = url.ParseQuery(string(body)); err != nil {
			return tr, failure(400, "invalid_request", 9002313, "Invalid request. Request is malformed or invalid.")
		}
	}
	tr.clientID = tr.form.Get("client_id")
	tr.secret, tr.secretGiven = tr.form.Get("client_secret"), tr.form.Has("client_secret")
	tr.assertion, tr.assertionType = tr.form.Get("client_assertion"), tr.form.Get("client_assertion_type")
	if tr.assertion != "" {
		tr.parsed, tr.parseErr = parseJWT(tr.assertion)
	}
	if user, pass, ok := r.BasicAuth(); ok {
		// RFC 6749 2.3.1: both parts are form-urlencoded before base64.
		if u, err := url.QueryUnescape(user); err == nil {
			user = u
		}
		if p, err := url.QueryUnescape(pass); err == nil {
			pass = p
		}
		if tr.secretGiven {
			return tr, failure(400, "invalid_request", 9002313,
				"Invalid request. Request is malformed or invalid. [Reason - client_secret sent both in the body and in the Authorization header.]")
		}
		if tr.clientID != "" && !strings.EqualFold(tr.clientID, user) {
			return tr, failure(400, "invalid_request", 9002313,
				"Invalid request. Request is malformed or invalid. [Reason - client_id in the body and in the Authorization header differ.]")
		}
		tr.basic, tr.clientID, tr.secret, tr.secretGiven = true, user, pass, true
	}
	if tr.clientID == "" && tr.parsed != nil {
		tr.clientID = stringClaim(tr.parsed.Claims, "sub")
	}
	return tr, nil
}

// logTokenRequest records the form without secrets or assertions.
func logTokenRequest(r *http.Request, tr *tokenRequest) {
	annotate(r, func(e *LogEntry) {
		e.Form = map[string][]string{}
		for k, v := range tr.form {
			if k != "client_secret" && k != "client_assertion" {
				e.Form[k] = v
			}
		}
		secret, basic, assertion := tr.secretGiven, tr.basic, tr.assertion != ""
		e.SecretPresent, e.BasicAuth, e.AssertionPresent = &secret, &basic, &assertion
		if tr.parsed != nil {
			e.Assertion = &AssertionInfo{Header: tr.parsed.Header, Claims: tr.parsed.Claims}
		} else if tr.parseErr != nil {
			e.Assertion = &AssertionInfo{Error: tr.parseErr.Error()}
		}
		e.ClientID = tr.clientID
	})
}

func (a *AAD) token(w http.ResponseWriter, r *http.Request, tenant string, fl flavor) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		a.writeFailure(w, r, failure(405, "invalid_request", 900561,
			"The endpoint only accepts POST requests. Received a %s request.", r.Method))
		return
	}
	tr, fail := readTokenRequest(w, r)
	if tr != nil {
		logTokenRequest(r, tr)
	}
	if f := a.faults.Next("aad", a.now()); f != nil && f.apply(w, r, a.quit, a.faultBody) {
		return
	}
	if fail != nil {
		a.writeFailure(w, r, fail)
		return
	}
	app, resource, viaCert, fail := a.authenticate(r, tr, tenant, fl)
	if fail != nil {
		a.writeFailure(w, r, fail)
		return
	}
	a.issue(w, r, app, fl, resource, viaCert)
}

func missingParam(name string) *aadFailure {
	return failure(400, "invalid_request", 900144, "The request body must contain the following parameter: '%s'.", name)
}

// authenticate validates the request and the client's credential.
func (a *AAD) authenticate(r *http.Request, tr *tokenRequest, tenant string, fl flavor) (*aadApp, string, bool, *aadFailure) {
	switch gt := tr.form.Get("grant_type"); {
	case gt == "":
		return nil, "", false, missingParam("grant_type")
	case gt != "client_credentials":
		return nil, "", false, failure(400, "unsupported_grant_type", 70003,
			"The app requested an unsupported grant type '%s'.", gt)
	}
	if tr.clientID == "" {
		return nil, "", false, missingParam("client_id")
	}
	resource, fail := requestedResource(tr.form, fl)
	if fail != nil {
		return nil, "", false, fail
	}
	if !a.knownTenant(tenant) {
		return nil, "", false, failure(400, "invalid_request", 90002,
			"Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.", tenant)
	}
	app := a.findApp(tenant, tr.clientID)
	if app == nil {
		return nil, "", false, failure(400, "unauthorized_client", 700016,
			"Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", tr.clientID, tenant)
	}
	switch {
	case tr.secretGiven && tr.assertion != "":
		return nil, "", false, failure(400, "invalid_request", 9002313,
			"Invalid request. Request is malformed or invalid. [Reason - both client_secret and client_assertion were sent.]")
	case tr.secretGiven:
		if app.Secret == "" || subtle.ConstantTimeCompare([]byte(app.Secret), []byte(tr.secret)) != 1 {
			return nil, "", false, failure(401, "invalid_client", 7000215,
				"Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", app.ClientID)
		}
		return app, resource, false, nil
	case tr.assertion != "":
		if tr.assertionType == "" {
			return nil, "", false, missingParam("client_assertion_type")
		}
		if tr.assertionType != jwtBearerType {
			return nil, "", false, failure(400, "invalid_request", 900144,
				"The request body must contain the following parameter: 'client_assertion_type' with the value '%s'.", jwtBearerType)
		}
		if f := verifyAssertion(tr, app, assertionAudiences(r), a.now()); f != nil {
			return nil, "", false, f
		}
		return app, resource, true, nil
	default:
		return nil, "", false, failure(401, "invalid_client", 7000218,
			"The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
	}
}

// requestedResource returns the resource the token is for: v1 and ADFS take `resource`
// (ADFS also a scope), v2 takes exactly one `<resource>/.default` scope.
func requestedResource(form url.Values, fl flavor) (string, *aadFailure) {
	if fl == flavorV2 {
		scope := form.Get("scope")
		fields := strings.Fields(scope)
		switch {
		case scope == "":
			return "", missingParam("scope")
		case len(fields) != 1:
			return "", failure(400, "invalid_scope", 70011,
				"The provided value for the input parameter 'scope' is not valid. The scope %s is not valid. All scopes included must be for a single resource.", scope)
		case !strings.HasSuffix(fields[0], "/.default") || fields[0] == "/.default":
			return "", failure(400, "invalid_scope", 1002012,
				"The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", scope)
		}
		return strings.TrimSuffix(fields[0], "/.default"), nil
	}
	if res := form.Get("resource"); res != "" {
		return res, nil
	}
	if fl == flavorADFS {
		if fields := strings.Fields(form.Get("scope")); len(fields) > 0 {
			return strings.TrimSuffix(fields[0], "/.default"), nil
		}
	}
	return "", missingParam("resource")
}

// assertionAudiences lists the accepted `aud` values: this endpoint's URL with and without
// the query string.
func assertionAudiences(r *http.Request) []string {
	rawPath, rawQuery := splitTarget(r.RequestURI)
	base := baseURL(r) + rawPath
	if rawQuery == "" {
		return []string{base}
	}
	return []string{base, base + "?" + rawQuery}
}

type v1TokenResponse struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    string `json:"expires_in"`
	ExtExpiresIn string `json:"ext_expires_in"`
	ExpiresOn    string `json:"expires_on"`
	NotBefore    string `json:"not_before"`
	Resource     string `json:"resource"`
	AccessToken  string `json:"access_token"`
}

type v2TokenResponse struct {
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	ExtExpiresIn int64  `json:"ext_expires_in"`
	AccessToken  string `json:"access_token"`
}

type adfsTokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

func (a *AAD) issue(w http.ResponseWriter, r *http.Request, app *aadApp, fl flavor, resource string, viaCert bool) {
	now := a.now()
	iat := now.Unix() - 300
	exp := now.Unix() + a.lifetime
	acr := "1"
	if viaCert {
		acr = "2"
	}
	v1Issuer := "https://sts.windows.net/" + app.TenantID + "/"
	claims := map[string]any{
		"aud": resource, "iat": iat, "nbf": iat, "exp": exp,
		"aio": "emulated", "appid": app.ClientID, "appidacr": acr, "idp": v1Issuer, "idtyp": "app",
		"oid": app.objectID, "sub": app.objectID, "tid": app.TenantID, "uti": newGUID(),
	}
	switch fl {
	case flavorV1:
		claims["iss"], claims["ver"] = v1Issuer, "1.0"
	case flavorV2:
		claims["iss"], claims["ver"] = "https://login.microsoftonline.com/"+app.TenantID+"/v2.0", "2.0"
		claims["azp"], claims["azpacr"] = app.ClientID, acr
	case flavorADFS:
		claims = map[string]any{
			"aud": resource, "iat": iat, "nbf": iat, "exp": exp, "iss": baseURL(r) + "/adfs",
			"appid": app.ClientID, "apptype": "Confidential", "sub": app.ClientID, "ver": "1.0",
			"authmethod": map[bool]string{false: "ClientSecretPostAuthentication", true: "ClientAssertionAuthentication"}[viaCert],
		}
	}
	token := a.signer.Sign(claims)
	annotate(r, func(e *LogEntry) { e.ClientID = app.ClientID })
	aadHeaders(w, r, newGUID())
	switch fl {
	case flavorV1:
		lt := strconv.FormatInt(a.lifetime, 10)
		writeJSON(w, http.StatusOK, v1TokenResponse{"Bearer", lt, lt, strconv.FormatInt(exp, 10),
			strconv.FormatInt(iat, 10), resource, token})
	case flavorV2:
		writeJSON(w, http.StatusOK, v2TokenResponse{"Bearer", a.lifetime, a.lifetime, token})
	case flavorADFS:
		writeJSON(w, http.StatusOK, adfsTokenResponse{token, "bearer", a.lifetime})
	}
}
