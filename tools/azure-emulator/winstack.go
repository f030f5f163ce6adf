package main

// The "windows" HTTP stack of the IMDS listener (imds.http_stack = "windows"). The real IMDS
// answers from behind a Windows HTTP stack (http.sys) whose habits differ from Go's net/http in
// ways a client or proxy in front of it must survive:
//
//   - a request with "Expect: 100-continue" gets an interim "HTTP/1.1 100 Continue" at once,
//     before the final answer, whatever the method, body size or path;
//   - the path is decoded once (%XX and %uXXXX), '\' becomes '/', dot segments are resolved and
//     trailing dots and spaces of every segment are dropped before the application sees it;
//   - connections persist after every answer, error or not, following the HTTP version's rules;
//   - a HEAD answer carries the Content-Length of the GET body and no body;
//   - answers are always framed with Content-Length.
//
// This file is that front end: a small HTTP/1.x server on a raw TCP listener. It parses each
// request head with http.sys's default limits, reads the body (Content-Length or chunked), folds
// the path, runs the emulator's IMDS handler into a buffer and writes the buffered answer with
// its own framing. Requests are served one after the other on a connection (pipelining). The
// request log sees every request whose request line could be read, including the ones the stack
// refuses itself. README.md ("IMDS behind a Windows HTTP stack") says which behaviours come from
// http.sys's documentation and which are this emulator's choices.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	// http.sys defaults (MaxRequestBytes = MaxFieldLength = 16384, UrlSegmentMaxLength = 260,
	// UrlSegmentMaxCount = 255).
	winMaxRequestBytes  = 16384
	winMaxSegmentLength = 260
	winMaxSegmentCount  = 255
	// http.sys sets no limit on request bodies; the emulator keeps them in memory, so it does.
	winMaxBody = 1 << 20
	// What http.sys calls itself when it answers on its own (and when the application sets no
	// Server header).
	winServerHeader = "Microsoft-HTTPAPI/2.0"
	// Route recorded in the log for requests the stack refused before the application.
	routeRejectedByStack = "rejected_by_stack"
)

// stackInfo travels in the context of a request served by the Windows stack.
type stackInfo struct {
	path string // the folded path (always starts with '/', no empty or dot segments)
}

type stackCtxKey struct{}

func stackOf(r *http.Request) *stackInfo {
	si, _ := r.Context().Value(stackCtxKey{}).(*stackInfo)
	return si
}

// requestPath is the canonical path of a request: the Windows stack's folded path when there is
// one, else the emulator's lenient normalisation of the raw request target.
func requestPath(r *http.Request) string {
	if si := stackOf(r); si != nil {
		return si.path
	}
	rawPath, _ := splitTarget(r.RequestURI)
	return normalizePath(rawPath)
}

// requestMethod is the method the IMDS application acts on. Behind the Windows stack, HEAD is
// served as GET (the stack then drops the body and keeps its Content-Length).
func requestMethod(r *http.Request) string {
	if r.Method == http.MethodHead && stackOf(r) != nil {
		return http.MethodGet
	}
	return r.Method
}

// stackError is an answer the stack gives on its own, in http.sys's HTML error shape.
type stackError struct {
	status  int
	heading string // e.g. "Bad Request - Invalid URL"
	message string // e.g. "The request URL is invalid."
}

func (e *stackError) Error() string {
	return fmt.Sprintf("%d %s", e.status, e.heading)
}

var (
	errWinBadRequest    = &stackError{400, "Bad Request", "The request is badly formed."}
	errWinInvalidURL    = &stackError{400, "Bad Request - Invalid URL", "The request URL is invalid."}
	errWinInvalidVerb   = &stackError{400, "Bad Request - Invalid Verb", "The request verb is invalid."}
	errWinInvalidHeader = &stackError{400, "Bad Request - Invalid Header", "The request has an invalid header name."}
	errWinInvalidHost   = &stackError{400, "Bad Request - Invalid Hostname", "The request hostname is invalid."}
	errWinTooLong       = &stackError{400, "Bad Request - Request Too Long", "The size of the request headers is too long."}
	errWinBadLength     = &stackError{400, "Bad Request - Invalid Content Length", "The request has an invalid length."}
	errWinBadChunk      = &stackError{400, "Bad Request - Invalid Chunk", "The request body is badly chunked."}
	errWinBodyTooLarge  = &stackError{413, "Request Entity Too Large", "The request body is too large."}
	errWinEncoding      = &stackError{501, "Not Implemented", "The transfer encoding of the request is not supported."}
	errWinVersion       = &stackError{505, "HTTP Version Not Supported", "The HTTP version of the request is not supported."}
)

// body is the HTML page the stack sends with its own errors.
func (e *stackError) body() []byte {
	title := http.StatusText(e.status)
	return []byte("<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 4.01//EN\"\"http://www.w3.org/TR/html4/strict.dtd\">\r\n" +
		"<HTML><HEAD><TITLE>" + title + "</TITLE>\r\n" +
		"<META HTTP-EQUIV=\"Content-Type\" Content=\"text/html; charset=us-ascii\"></HEAD>\r\n" +
		"<BODY><h2>" + e.heading + "</h2>\r\n" +
		"<hr><p>HTTP Error " + strconv.Itoa(e.status) + ". " + e.message + "</p>\r\n" +
		"</BODY></HTML>\r\n")
}

// winStack serves one listener.
type winStack struct {
	ln       net.Listener
	handler  http.Handler
	log      *RequestLog
	listener string // name in the request log

	idleTimeout   time.Duration // waiting for the next request on an open connection
	headerTimeout time.Duration // from its first byte to the end of a request head
	bodyTimeout   time.Duration // reading a request body
	writeTimeout  time.Duration

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newWinStack(ln net.Listener, h http.Handler, log *RequestLog, listener string) *winStack {
	// http.sys's default timers: IdleConnection, HeaderWait and EntityBody are 120 s each.
	return &winStack{ln: ln, handler: h, log: log, listener: listener,
		idleTimeout: 120 * time.Second, headerTimeout: 120 * time.Second, bodyTimeout: 120 * time.Second,
		writeTimeout: 120 * time.Second, conns: map[net.Conn]struct{}{}}
}

// Serve accepts connections until Close; it then returns http.ErrServerClosed.
func (s *winStack) Serve() error {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		if !s.track(c, true) {
			_ = c.Close()
			return http.ErrServerClosed
		}
		go func() {
			defer s.track(c, false)
			defer c.Close()
			s.serveConn(c)
		}()
	}
}

func (s *winStack) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.conns, c)
		return true
	}
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

// Close stops accepting and cuts every connection.
func (s *winStack) Close() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = map[net.Conn]struct{}{}
	s.mu.Unlock()
	_ = s.ln.Close()
	for c := range conns {
		_ = c.Close()
	}
}

// winRequest is a parsed request head.
type winRequest struct {
	method, target, proto string
	minor                 int // 0 or 1 (HTTP/1.x)
	header                http.Header
	host                  string
	contentLength         int64 // -1: none announced
	chunked               bool
	expectContinue        bool
	keepAlive             bool
	path                  string // folded; "" until foldPath succeeded
}

func (s *winStack) serveConn(c net.Conn) {
	cr := newWinConnReader(c)
	br := bufio.NewReaderSize(cr, 4096)
	bw := bufio.NewWriterSize(c, 4096)
	for {
		_ = c.SetReadDeadline(time.Now().Add(s.idleTimeout))
		if _, err := br.Peek(1); err != nil {
			return // closed, reset or idle for too long: http.sys closes silently
		}
		_ = c.SetReadDeadline(time.Now().Add(s.headerTimeout))
		req, err := readWinRequestHead(br)
		if err != nil {
			s.refuse(c, bw, req, err)
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(s.writeTimeout))
		if req.expectContinue {
			// Sent by the stack itself before the application is involved, whether or not
			// anybody reads the body.
			if _, err := bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
				return
			}
			if err := bw.Flush(); err != nil {
				return
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(s.bodyTimeout))
		body, err := readWinBody(br, req)
		if err != nil {
			s.refuse(c, bw, req, err)
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		if !s.serveOne(c, cr, bw, req, body) || !req.keepAlive {
			return
		}
	}
}

// serveOne runs the handler for a complete request and writes its answer. It returns false when
// the connection must end (the handler deliberately answered nothing, or a write failed).
func (s *winStack) serveOne(c net.Conn, cr *winConnReader, bw *bufio.Writer, req *winRequest, body []byte) bool {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx = context.WithValue(ctx, stackCtxKey{}, &stackInfo{path: req.path})
	hr := s.httpRequest(c, req, body).WithContext(ctx)
	rec := &winRecorder{header: http.Header{}}
	cr.startBackgroundRead(cancel) // a client that goes away cancels ctx (hang faults end)
	s.handler.ServeHTTP(rec, hr)
	cr.abortPendingRead()
	if !rec.wrote && ctx.Err() != nil {
		return false // nothing to say to a client that is gone
	}
	_ = c.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	writeWinResponse(bw, req, rec)
	return bw.Flush() == nil
}

func (s *winStack) httpRequest(c net.Conn, req *winRequest, body []byte) *http.Request {
	rawPath, rawQuery := splitTarget(req.target)
	if req.path != "" {
		rawPath = req.path
	}
	r := &http.Request{
		Method:        req.method,
		URL:           &url.URL{Path: rawPath, RawQuery: rawQuery},
		Proto:         req.proto,
		ProtoMajor:    1,
		ProtoMinor:    req.minor,
		Header:        req.header,
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Host:          req.host,
		RemoteAddr:    c.RemoteAddr().String(),
		RequestURI:    req.target,
		Close:         !req.keepAlive,
	}
	if r.Header == nil {
		r.Header = http.Header{}
	}
	return r
}

// refuse answers a request the stack will not pass on, logs it when its request line was read,
// and ends the connection (http.sys closes after its own 4xx/5xx: the stream cannot be trusted).
func (s *winStack) refuse(c net.Conn, bw *bufio.Writer, req *winRequest, err error) {
	var se *stackError
	if !errors.As(err, &se) {
		return // I/O error or timeout: nothing to answer
	}
	if req != nil && req.target != "" {
		r := s.httpRequest(c, req, nil)
		if req.path != "" {
			r = r.WithContext(context.WithValue(context.Background(), stackCtxKey{}, &stackInfo{path: req.path}))
		}
		s.log.Record(s.listener, r, se.status, routeRejectedByStack, "windows stack: "+se.heading)
	}
	body := se.body()
	_ = c.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=us-ascii\r\nServer: %s\r\n"+
		"Date: %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n",
		se.status, http.StatusText(se.status), winServerHeader, time.Now().UTC().Format(http.TimeFormat), len(body))
	_, _ = bw.Write(body)
	_ = bw.Flush()
	// Let the client read the answer before the close (a reset could discard it).
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
	}
}

// headReader reads the lines of one request head within winMaxRequestBytes.
type headReader struct {
	br   *bufio.Reader
	used int
}

// line returns the next line without its line end (CRLF, or a bare LF).
func (h *headReader) line() (string, error) {
	var buf []byte
	for {
		chunk, err := h.br.ReadSlice('\n')
		h.used += len(chunk)
		if h.used > winMaxRequestBytes {
			return "", errWinTooLong
		}
		buf = append(buf, chunk...)
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			if err == io.EOF && len(buf) > 0 {
				return "", errWinBadRequest
			}
			return "", err
		}
	}
	buf = buf[:len(buf)-1]
	if n := len(buf); n > 0 && buf[n-1] == '\r' {
		buf = buf[:n-1]
	}
	return string(buf), nil
}

func isTokenChar(c byte) bool {
	if c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// readWinRequestHead parses a request line and its header fields. On a stackError the returned
// request holds whatever was understood (for the log); it is nil before the request line.
func readWinRequestHead(br *bufio.Reader) (*winRequest, error) {
	h := &headReader{br: br}
	var line string
	var err error
	for { // empty lines before a request line are ignored
		if line, err = h.line(); err != nil {
			return nil, err
		}
		if line != "" {
			break
		}
	}
	parts := strings.Split(line, " ")
	if len(parts) != 3 {
		return nil, errWinBadRequest
	}
	req := &winRequest{method: parts[0], target: parts[1], proto: parts[2], contentLength: -1}
	for i := 0; i < len(line); i++ {
		if c := line[i]; c < 0x20 || c == 0x7f {
			return req, errWinInvalidURL
		}
	}
	if !isToken(req.method) {
		return req, errWinInvalidVerb
	}
	switch req.proto {
	case "HTTP/1.1":
		req.minor = 1
	case "HTTP/1.0":
	default:
		if len(req.proto) == 8 && strings.HasPrefix(req.proto, "HTTP/") && req.proto[6] == '.' &&
			req.proto[5] >= '0' && req.proto[5] <= '9' && req.proto[7] >= '0' && req.proto[7] <= '9' {
			return req, errWinVersion
		}
		return req, errWinBadRequest
	}
	if req.target == "" {
		return req, errWinInvalidURL
	}
	req.header = http.Header{}
	for {
		line, err := h.line()
		if err != nil {
			return req, err
		}
		if line == "" {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return req, errWinInvalidHeader // obsolete line folding
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !isToken(name) {
			return req, errWinInvalidHeader
		}
		value = strings.Trim(value, " \t")
		for i := 0; i < len(value); i++ {
			if c := value[i]; c < 0x20 && c != '\t' || c == 0x7f {
				return req, errWinInvalidHeader
			}
		}
		key := textproto.CanonicalMIMEHeaderKey(name)
		req.header[key] = append(req.header[key], value)
	}
	return req, req.interpretHead()
}

// interpretHead checks the head's semantics: host, framing, expectations, persistence and the
// path.
func (req *winRequest) interpretHead() error {
	hosts := req.header["Host"]
	delete(req.header, "Host")
	switch {
	case len(hosts) > 1:
		return errWinInvalidHost
	case len(hosts) == 1:
		req.host = hosts[0]
		if strings.ContainsAny(req.host, " \t/\\?#@") {
			return errWinInvalidHost
		}
	case req.minor == 1:
		return errWinInvalidHost
	}
	if te := req.header["Transfer-Encoding"]; len(te) > 0 {
		if len(te) != 1 || !strings.EqualFold(strings.TrimSpace(te[0]), "chunked") {
			return errWinEncoding
		}
		if req.minor == 0 {
			return errWinBadRequest
		}
		if len(req.header["Content-Length"]) > 0 {
			return errWinBadLength
		}
		req.chunked = true
	}
	for _, v := range req.header["Content-Length"] {
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			n, err := strconv.ParseInt(item, 10, 64)
			if err != nil || n < 0 || item == "" || item[0] == '+' {
				return errWinBadLength
			}
			if req.contentLength >= 0 && n != req.contentLength {
				return errWinBadLength
			}
			req.contentLength = n
		}
	}
	if req.contentLength > winMaxBody {
		return errWinBodyTooLarge
	}
	conn := strings.ToLower(strings.Join(req.header["Connection"], ","))
	closeTok, keepTok := false, false
	for _, t := range strings.Split(conn, ",") {
		switch strings.TrimSpace(t) {
		case "close":
			closeTok = true
		case "keep-alive":
			keepTok = true
		}
	}
	req.keepAlive = !closeTok && (req.minor == 1 || keepTok)
	if req.minor == 1 { // an HTTP/1.0 client never gets 1xx (RFC 9110 10.1.1)
		for _, v := range req.header["Expect"] {
			for _, t := range strings.Split(v, ",") {
				if strings.EqualFold(strings.TrimSpace(t), "100-continue") {
					req.expectContinue = true
				}
			}
		}
	}
	rawPath, err := winTargetPath(req.target)
	if err != nil {
		return err
	}
	if req.path, err = winFoldPath(rawPath); err != nil {
		return err
	}
	return nil
}

// winTargetPath extracts the raw path of an origin-form or absolute-form (http://host/path)
// request target.
func winTargetPath(target string) (string, error) {
	if strings.ContainsRune(target, '#') {
		return "", errWinInvalidURL
	}
	rawPath, _, _ := strings.Cut(target, "?")
	if strings.HasPrefix(rawPath, "/") {
		return rawPath, nil
	}
	lower := strings.ToLower(rawPath)
	for _, scheme := range []string{"http://", "https://"} {
		if strings.HasPrefix(lower, scheme) {
			rest := rawPath[len(scheme):]
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				return rest[i:], nil
			}
			return "/", nil
		}
	}
	return "", errWinInvalidURL
}

// winFoldPath is the path the application sees: percent-escapes decoded once (%XX, and %uXXXX as
// http.sys's default PercentUAllowed does), decoded control characters refused (AllowRestrictedChars
// is off by default), '\' turned into '/', "." and ".." resolved (never above the root), trailing
// dots and spaces of each segment dropped, empty segments and a trailing slash dropped. Letter
// case is kept; the IMDS handler compares case-insensitively.
func winFoldPath(raw string) (string, error) {
	dec, ok := winUnescape(raw)
	if !ok {
		return "", errWinInvalidURL
	}
	for i := 0; i < len(dec); {
		r, size := utf8.DecodeRuneInString(dec[i:])
		if r < 0x20 || r >= 0x7f && r <= 0x9f && (size > 1 || r == 0x7f) {
			return "", errWinInvalidURL
		}
		i += size
	}
	segs := strings.Split(strings.ReplaceAll(dec, `\`, "/"), "/")
	if len(segs) > winMaxSegmentCount+1 {
		return "", errWinInvalidURL
	}
	var out []string
	for _, seg := range segs {
		if len(seg) > winMaxSegmentLength {
			return "", errWinInvalidURL
		}
		switch strings.TrimRight(seg, " ") {
		case "", ".":
			continue
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			continue
		}
		if seg = strings.TrimRight(seg, ". "); seg != "" {
			out = append(out, seg)
		}
	}
	return "/" + strings.Join(out, "/"), nil
}

// winUnescape decodes %XX and %uXXXX once; ok is false for any other use of '%'.
func winUnescape(s string) (string, bool) {
	if !strings.Contains(s, "%") {
		return s, true
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+5 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') &&
			isHex(s[i+2]) && isHex(s[i+3]) && isHex(s[i+4]) && isHex(s[i+5]) {
			r := rune(unhex(s[i+2]))<<12 | rune(unhex(s[i+3]))<<8 | rune(unhex(s[i+4]))<<4 | rune(unhex(s[i+5]))
			if r == 0 || !utf8.ValidRune(r) {
				return "", false
			}
			b.WriteRune(r)
			i += 5
			continue
		}
		if i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		return "", false
	}
	return b.String(), true
}

// readWinBody reads the request body announced by the head.
func readWinBody(br *bufio.Reader, req *winRequest) ([]byte, error) {
	if req.chunked {
		return readChunked(br)
	}
	if req.contentLength <= 0 {
		return nil, nil
	}
	body := make([]byte, req.contentLength)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	return body, nil
}

func readChunked(br *bufio.Reader) ([]byte, error) {
	h := &headReader{br: br}
	var body []byte
	for {
		h.used = 0
		line, err := h.line()
		if err != nil {
			if _, ok := err.(*stackError); ok {
				return nil, errWinBadChunk
			}
			return nil, err
		}
		sizeText, _, _ := strings.Cut(line, ";")
		sizeText = strings.TrimRight(sizeText, " \t")
		size, err := strconv.ParseUint(sizeText, 16, 32)
		if err != nil || sizeText == "" || strings.HasPrefix(sizeText, "+") {
			return nil, errWinBadChunk
		}
		if uint64(len(body))+size > winMaxBody {
			return nil, errWinBodyTooLarge
		}
		if size == 0 {
			break
		}
		n := len(body)
		body = append(body, make([]byte, size)...)
		if _, err := io.ReadFull(br, body[n:]); err != nil {
			return nil, err
		}
		var crlf [2]byte
		if _, err := io.ReadFull(br, crlf[:]); err != nil {
			return nil, err
		}
		if crlf != [2]byte{'\r', '\n'} {
			return nil, errWinBadChunk
		}
	}
	h.used = 0
	for { // trailer fields, ignored
		line, err := h.line()
		if err != nil {
			if _, ok := err.(*stackError); ok {
				return nil, errWinBadChunk
			}
			return nil, err
		}
		if line == "" {
			return body, nil
		}
	}
}

// winRecorder buffers a handler's answer.
type winRecorder struct {
	header  http.Header
	sent    http.Header // the header as it was when the status was set
	status  int
	interim []int // 1xx statuses the handler sent before its final one
	wrote   bool
	body    bytes.Buffer
}

func (w *winRecorder) Header() http.Header { return w.header }

func (w *winRecorder) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.wrote = true
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.interim = append(w.interim, code)
		return
	}
	w.status = code
	w.sent = w.header.Clone()
}

func (w *winRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.body.Write(b)
}

func (w *winRecorder) Flush() {}

// hop-by-hop and framing fields: the stack's business, never taken from the application.
var winStackFields = map[string]bool{"Connection": true, "Content-Length": true, "Date": true,
	"Keep-Alive": true, "Transfer-Encoding": true, "Trailer": true, "Upgrade": true}

func writeWinResponse(bw *bufio.Writer, req *winRequest, rec *winRecorder) {
	for _, code := range rec.interim {
		fmt.Fprintf(bw, "HTTP/1.1 %d %s\r\n\r\n", code, http.StatusText(code))
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
		rec.sent = rec.header.Clone()
	}
	fmt.Fprintf(bw, "HTTP/1.1 %03d %s\r\n", status, http.StatusText(status))
	names := make([]string, 0, len(rec.sent))
	for name := range rec.sent {
		names = append(names, name)
	}
	sort.Strings(names)
	hasServer := false
	for _, name := range names {
		canon := textproto.CanonicalMIMEHeaderKey(name)
		if winStackFields[canon] || !isToken(name) {
			continue
		}
		hasServer = hasServer || canon == "Server"
		for _, v := range rec.sent[name] {
			if strings.ContainsAny(v, "\r\n\x00") {
				continue
			}
			fmt.Fprintf(bw, "%s: %s\r\n", canon, v)
		}
	}
	if !hasServer {
		fmt.Fprintf(bw, "Server: %s\r\n", winServerHeader)
	}
	fmt.Fprintf(bw, "Date: %s\r\n", time.Now().UTC().Format(http.TimeFormat))
	switch {
	case !req.keepAlive:
		bw.WriteString("Connection: close\r\n")
	case req.minor == 0:
		bw.WriteString("Connection: keep-alive\r\n")
	}
	noBody := status == http.StatusNoContent || status == http.StatusNotModified
	if !noBody {
		fmt.Fprintf(bw, "Content-Length: %d\r\n", rec.body.Len())
	}
	bw.WriteString("\r\n")
	if !noBody && req.method != http.MethodHead {
		_, _ = bw.Write(rec.body.Bytes())
	}
}

// winConnReader lets the stack notice a client that goes away while its request is being
// handled (as Go's server does): a background read of one byte runs during the handler; a byte
// it gets is handed to the next request, an error cancels the request's context.
type winConnReader struct {
	conn    net.Conn
	mu      sync.Mutex
	cond    *sync.Cond
	inRead  bool
	aborted bool
	hasByte bool
	byteBuf [1]byte
	err     error // what the background read ended with (sticky)
	cancel  context.CancelFunc
}

func newWinConnReader(c net.Conn) *winConnReader {
	cr := &winConnReader{conn: c}
	cr.cond = sync.NewCond(&cr.mu)
	return cr
}

func (cr *winConnReader) Read(p []byte) (int, error) {
	cr.mu.Lock()
	if len(p) == 0 {
		cr.mu.Unlock()
		return 0, nil
	}
	if cr.hasByte {
		p[0] = cr.byteBuf[0]
		cr.hasByte = false
		cr.mu.Unlock()
		return 1, nil
	}
	if cr.err != nil {
		err := cr.err
		cr.mu.Unlock()
		return 0, err
	}
	cr.mu.Unlock()
	return cr.conn.Read(p)
}

func (cr *winConnReader) startBackgroundRead(cancel context.CancelFunc) {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.hasByte || cr.err != nil {
		if cr.err != nil {
			cancel()
		}
		return
	}
	cr.inRead, cr.cancel = true, cancel
	_ = cr.conn.SetReadDeadline(time.Time{})
	go cr.backgroundRead()
}

func (cr *winConnReader) backgroundRead() {
	n, err := cr.conn.Read(cr.byteBuf[:])
	cr.mu.Lock()
	if n == 1 {
		cr.hasByte = true
	}
	var ne net.Error
	if err != nil && !(cr.aborted && errors.As(err, &ne) && ne.Timeout()) {
		cr.err = err
		cr.cancel()
	}
	cr.aborted, cr.inRead = false, false
	cr.mu.Unlock()
	cr.cond.Broadcast()
}

// abortPendingRead stops the background read (if any) and waits for it.
func (cr *winConnReader) abortPendingRead() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if !cr.inRead {
		return
	}
	cr.aborted = true
	_ = cr.conn.SetReadDeadline(time.Unix(1, 0))
	for cr.inRead {
		cr.cond.Wait()
	}
	_ = cr.conn.SetReadDeadline(time.Time{})
}
