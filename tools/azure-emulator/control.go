package main

import (
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// controlHandler serves the test-control API (never logged in the request log).
func (e *Emulator) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, e.ready)
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, e.signer.JWKS())
	})
	mux.HandleFunc("GET /log", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write(e.log.Snapshot(r.URL.Query().Get("listener")))
	})
	mux.HandleFunc("DELETE /log", func(w http.ResponseWriter, r *http.Request) {
		e.log.Clear()
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, e.faults.List())
	})
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		var f Fault
		if !decodeBody(w, r, &f) {
			return
		}
		added, err := e.faults.Add(f, time.Now())
		if err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, added)
	})
	mux.HandleFunc("DELETE /faults", func(w http.ResponseWriter, r *http.Request) {
		e.faults.Clear(r.URL.Query().Get("target"))
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST /config/imds", func(w http.ResponseWriter, r *http.Request) {
		if e.imds == nil {
			controlError(w, http.StatusNotFound, "no imds section configured")
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		var keys map[string]json.RawMessage
		var u IMDSConfig
		if err := json.Unmarshal(body, &keys); err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := decodeStrict(body, &u); err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		if _, ok := keys["http_stack"]; ok {
			controlError(w, http.StatusBadRequest, "http_stack is chosen at start-up and cannot be changed")
			return
		}
		_, hasSA := keys["system_assigned"]
		_, hasUA := keys["user_assigned"]
		if err := e.imds.Update(&u, hasSA || hasUA); err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	mux.HandleFunc("POST /config/aad", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Apps []AppConfig `json:"apps"`
		}
		if !decodeBody(w, r, &body) {
			return
		}
		if err := e.aad.SetApps(body.Apps); err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	})
	return mux
}

func controlError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err == nil {
		err = decodeStrict(body, v)
	}
	if err != nil {
		controlError(w, http.StatusBadRequest, err.Error())
		return false
	}
	return true
}
