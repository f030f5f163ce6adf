// Command azure-emulator is a fake of the Azure Instance Metadata Service (managed-identity
// tokens, instance metadata) and of Azure AD's token endpoints, for nmi's tests. It shares no
// code with nmi. See README.md.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	cfgPath := flag.String("config", "", "configuration file (JSON)")
	readyPath := flag.String("ready-file", "", "written (atomically) once every listener is up")
	logPath := flag.String("log", "", "append every request as a JSON line to this file")
	flag.Parse()
	if *cfgPath == "" || *readyPath == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: azure-emulator --config FILE --ready-file FILE [--log FILE]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, *cfgPath, *readyPath, *logPath); err != nil {
		fmt.Fprintln(os.Stderr, "azure-emulator:", err)
		os.Exit(1)
	}
}

// Ready is the content of the ready file (and of GET /ready on the control listener).
type Ready struct {
	PID           int    `json:"pid"`
	TenantID      string `json:"tenant_id"`
	IMDS          string `json:"imds,omitempty"`
	IMDSHTTPStack string `json:"imds_http_stack,omitempty"` // "go" or "windows"
	AAD           string `json:"aad,omitempty"`
	AADURL        string `json:"aad_url,omitempty"`
	AADCA         string `json:"aad_ca,omitempty"`
	JWKSURL       string `json:"jwks_url,omitempty"`
	Proxy         string `json:"proxy,omitempty"`
	Control       string `json:"control"`
	ControlSocket string `json:"control_socket,omitempty"`
}

// Emulator owns the listeners and the shared state.
type Emulator struct {
	cfg     *Config
	signer  *Signer
	log     *RequestLog
	faults  *Faults
	imds    *IMDS
	aad     *AAD
	quit    chan struct{}
	ready   Ready
	servers []*http.Server
	serve   []func() error
	cleanup []func()
}

func run(ctx context.Context, cfgPath, readyPath, logPath string) error {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return err
	}
	e, err := newEmulator(cfg, readyPath, logPath)
	defer e.close()
	if err != nil {
		return err
	}
	errc := make(chan error, len(e.serve))
	for _, s := range e.serve {
		go func() {
			if err := s(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	if err := writeFileAtomic(readyPath, marshalJSON(e.ready)); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

// connectable turns a listener address into one a client can dial.
func connectable(addr net.Addr) string {
	host, port, _ := net.SplitHostPort(addr.String())
	if isUnspecifiedHost(host) {
		if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			host = "::1"
		} else {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, port)
}

func newEmulator(cfg *Config, readyPath, logPath string) (*Emulator, error) {
	e := &Emulator{cfg: cfg, faults: newFaults(), quit: make(chan struct{})}
	e.ready = Ready{PID: os.Getpid(), TenantID: cfg.TenantID}
	var err error
	if e.log, err = newRequestLog(logPath); err != nil {
		return e, err
	}
	e.cleanup = append(e.cleanup, e.log.Close)
	if e.signer, err = newSigner(); err != nil {
		return e, err
	}
	if e.aad, err = newAAD(cfg, e.signer, e.faults, e.quit); err != nil {
		return e, err
	}
	dir, err := filepath.Abs(filepath.Dir(readyPath))
	if err != nil {
		return e, err
	}
	if cfg.IMDS != nil {
		if e.imds, err = newIMDS(cfg, e.signer, e.faults, e.quit); err != nil {
			return e, err
		}
		var ln net.Listener
		if cfg.IMDS.HTTPStack == stackWindows {
			ln, err = e.listenWindows("imds", cfg.IMDS.Listen, e.log.Wrap("imds", e.imds))
		} else {
			ln, err = e.listen("imds", cfg.IMDS.Listen, e.log.Wrap("imds", e.imds), nil)
		}
		if err != nil {
			return e, err
		}
		e.ready.IMDS = connectable(ln.Addr())
		e.ready.IMDSHTTPStack = cfg.IMDS.HTTPStack
	}
	if cfg.AAD != nil {
		var tlsCfg *tls.Config
		scheme := "http"
		if cfg.AAD.TLS == nil || *cfg.AAD.TLS {
			host, _, _ := net.SplitHostPort(cfg.AAD.Listen)
			cert, caPEM, err := selfSignedTLS(append([]string{host}, cfg.AAD.TLSNames...))
			if err != nil {
				return e, err
			}
			e.ready.AADCA = filepath.Join(dir, "ca.pem")
			if err := writeFileAtomic(e.ready.AADCA, caPEM); err != nil {
				return e, err
			}
			tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			scheme = "https"
		}
		ln, err := e.listen("aad", cfg.AAD.Listen, e.log.Wrap("aad", e.aad), tlsCfg)
		if err != nil {
			return e, err
		}
		e.ready.AAD = connectable(ln.Addr())
		e.ready.AADURL = scheme + "://" + e.ready.AAD
		e.ready.JWKSURL = e.ready.AADURL + "/discovery/keys"
	}
	if cfg.Proxy != nil {
		ln, err := e.listen("proxy", cfg.Proxy.Listen, e.log.Wrap("proxy", newProxy(e.quit)), nil)
		if err != nil {
			return e, err
		}
		e.ready.Proxy = connectable(ln.Addr())
	}
	control := e.controlHandler()
	ln, err := e.listen("control", cfg.Control.Listen, control, nil)
	if err != nil {
		return e, err
	}
	e.ready.Control = "http://" + connectable(ln.Addr())
	if cfg.Control.Socket == nil || *cfg.Control.Socket {
		sock := filepath.Join(dir, "control.sock")
		if abs, err := filepath.Abs(sock); err == nil && len(abs) < 100 {
			_ = os.Remove(abs)
			if ul, err := net.Listen("unix", abs); err == nil {
				e.addServer(ul, control, nil)
				e.ready.ControlSocket = abs
				e.cleanup = append(e.cleanup, func() { _ = os.Remove(abs) })
			} else {
				log.Printf("control socket %s: %v (continuing without it)", abs, err)
			}
		}
	}
	return e, nil
}

func (e *Emulator) listen(name, addr string, h http.Handler, tlsCfg *tls.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen %s: %w", name, addr, err)
	}
	e.addServer(ln, h, tlsCfg)
	return ln, nil
}

// listenWindows serves h behind the http.sys-like front end (winstack.go).
func (e *Emulator) listenWindows(name, addr string, h http.Handler) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen %s: %w", name, addr, err)
	}
	ws := newWinStack(ln, h, e.log, name)
	e.serve = append(e.serve, ws.Serve)
	e.cleanup = append(e.cleanup, ws.Close)
	return ln, nil
}

func (e *Emulator) addServer(ln net.Listener, h http.Handler, tlsCfg *tls.Config) {
	srv := &http.Server{Handler: h, TLSConfig: tlsCfg, ReadHeaderTimeout: 30 * time.Second,
		ErrorLog: log.New(os.Stderr, "azure-emulator: http: ", 0)}
	e.servers = append(e.servers, srv)
	if tlsCfg != nil {
		e.serve = append(e.serve, func() error { return srv.ServeTLS(ln, "", "") })
	} else {
		e.serve = append(e.serve, func() error { return srv.Serve(ln) })
	}
	e.cleanup = append(e.cleanup, func() { _ = ln.Close() })
}

// close stops everything at once: hung requests are released and connections closed.
func (e *Emulator) close() {
	select {
	case <-e.quit:
		return
	default:
	}
	close(e.quit)
	for _, s := range e.servers {
		_ = s.Close()
	}
	for i := len(e.cleanup) - 1; i >= 0; i-- {
		e.cleanup[i]()
	}
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
