package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Proxy is a small forward proxy: CONNECT tunnels (for HTTPS_PROXY) and absolute-form plain
// HTTP requests (for HTTP_PROXY). Every request is logged with its upstream.
type Proxy struct {
	quit      <-chan struct{}
	transport *http.Transport
}

func newProxy(quit <-chan struct{}) *Proxy {
	return &Proxy{quit: quit, transport: &http.Transport{Proxy: nil, DisableKeepAlives: true,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext}}
}

var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		p.connect(w, r)
		return
	}
	if r.URL.Scheme != "http" || r.URL.Host == "" {
		annotate(r, func(e *LogEntry) { e.Error = "not a proxy request" })
		http.Error(w, "this is a proxy: send CONNECT or an absolute-form http:// request", http.StatusBadRequest)
		return
	}
	annotate(r, func(e *LogEntry) { e.Upstream = r.URL.Host; e.Route = "forward" })
	out := r.Clone(r.Context())
	out.RequestURI = ""
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	resp, err := p.transport.RoundTrip(out)
	if err != nil {
		annotate(r, func(e *LogEntry) { e.Error = err.Error() })
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func (p *Proxy) connect(w http.ResponseWriter, r *http.Request) {
	target := r.RequestURI
	annotate(r, func(e *LogEntry) { e.Upstream = target; e.Route = "connect" })
	if _, _, err := net.SplitHostPort(target); err != nil {
		annotate(r, func(e *LogEntry) { e.Error = "bad CONNECT target" })
		http.Error(w, "bad CONNECT target", http.StatusBadRequest)
		return
	}
	upstream, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		annotate(r, func(e *LogEntry) { e.Error = err.Error() })
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer upstream.Close()
	client, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		annotate(r, func(e *LogEntry) { e.Error = err.Error() })
		return
	}
	defer client.Close()
	annotate(r, func(e *LogEntry) { e.Status = http.StatusOK })
	if _, err := client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if n := buf.Reader.Buffered(); n > 0 {
			b, _ := buf.Reader.Peek(n)
			_, _ = upstream.Write(b)
		}
		_, _ = io.Copy(upstream, client)
		closeWrite(upstream)
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(client, upstream)
		closeWrite(client)
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-p.quit:
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = c.Close()
	}
}

// isUnspecifiedHost reports whether a listen host is 0.0.0.0, :: or empty.
func isUnspecifiedHost(h string) bool {
	h = strings.Trim(h, "[]")
	ip := net.ParseIP(h)
	return h == "" || (ip != nil && ip.IsUnspecified())
}
