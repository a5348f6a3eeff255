package egress

import (
	"bufio"
	"context"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentexec/agentexec/policy"
)

// Resolver looks names up; *net.Resolver is one. Tests pass a map.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config configures a Proxy. The zero value listens on 127.0.0.1 (a free port),
// resolves with the host's resolver and tunnels everything (no secrets).
type Config struct {
	// Listen is the TCP address to listen on; "" means "127.0.0.1:0". Ignored
	// when Listener is set.
	Listen string
	// Listener, when set, is served instead (the caller keeps no other use of it).
	Listener net.Listener
	// Resolver resolves destination names; nil: net.DefaultResolver.
	Resolver Resolver
	// Dial connects to an address the proxy checked ("IP:port", never a name);
	// nil: a net.Dialer with DialTimeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// DialTimeout bounds each lookup and each dial; 0 means 30s.
	DialTimeout time.Duration
	// Secrets are values the proxy puts in place of their placeholders in the
	// request headers of intercepted HTTPS requests to their hosts (mitm.go).
	Secrets []*Secret
	// CADir is where the CA bundle (system roots plus the proxy's CA certificate,
	// never its key) is written; required with Secrets.
	CADir string
	// SystemRoots is the system CA bundle copied into that bundle; "" means
	// /etc/ssl/certs/ca-certificates.crt.
	SystemRoots string
	// UpstreamRoots verify the servers of intercepted connections; nil: the
	// system's roots.
	UpstreamRoots *x509.CertPool
	// SSHProxyCommand, when set, is the ProxyCommand that ssh runs for sessions
	// with network.ssh hosts (GIT_SSH_COMMAND), as "/path/agentexec
	// __egress_connect %h %p": a program that runs ConnectHelper.
	SSHProxyCommand string
	// SSHOptions are extra "-o" options for that ssh command
	// ("UserKnownHostsFile=/etc/agentexec/known_hosts").
	SSHOptions []string
}

// Proxy is the egress proxy. It is safe for concurrent use.
type Proxy struct {
	cfg      Config
	ln       net.Listener
	srv      *http.Server
	resolver Resolver
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	timeout  time.Duration
	ca       *authority

	mu       sync.Mutex
	sessions map[string]*Session
	closed   bool
	// The accept path (socks.go): every listener's connections are sniffed
	// (SOCKS5 or HTTP); HTTP ones go to srv through hl.
	hl        *connListener
	listeners []net.Listener
	loops     sync.WaitGroup
	raw       map[net.Conn]struct{} // connections not yet handed to srv or a session
	rawWG     sync.WaitGroup

	stats struct {
		sessions, allowed, denied, authFailures, intercepted, sent, received atomic.Int64
	}
	served chan struct{}
}

// New starts a proxy: it listens, and serves until Close.
func New(cfg Config) (*Proxy, error) {
	p := &Proxy{cfg: cfg, sessions: map[string]*Session{}, served: make(chan struct{}), raw: map[net.Conn]struct{}{}}
	p.timeout = cfg.DialTimeout
	if p.timeout <= 0 {
		p.timeout = 30 * time.Second
	}
	p.resolver = cfg.Resolver
	if p.resolver == nil {
		p.resolver = net.DefaultResolver
	}
	p.dial = cfg.Dial
	if p.dial == nil {
		d := &net.Dialer{Timeout: p.timeout}
		p.dial = d.DialContext
	}
	if len(cfg.Secrets) > 0 {
		ca, err := newAuthority(cfg)
		if err != nil {
			return nil, err
		}
		p.ca = ca
	}
	p.ln = cfg.Listener
	if p.ln == nil {
		addr := cfg.Listen
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("egress: listen: %w", err)
		}
		p.ln = ln
	}
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	p.hl = newConnListener(p.ln.Addr())
	go func() {
		defer close(p.served)
		_ = p.srv.Serve(p.hl)
	}()
	if err := p.Serve(p.ln); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() net.Addr { return p.ln.Addr() }

// Port is the TCP port the proxy listens on (0 for a non-TCP listener): the
// port tools need a Landlock connect rule for.
func (p *Proxy) Port() int {
	if a, ok := p.ln.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// CABundle is the path of the bundle tools trust when secrets are configured
// (system roots plus the proxy's CA); "" without secrets.
func (p *Proxy) CABundle() string {
	if p.ca == nil {
		return ""
	}
	return p.ca.bundle
}

// Stats returns the counters since New.
func (p *Proxy) Stats() Stats {
	return Stats{
		Sessions: p.stats.sessions.Load(), Allowed: p.stats.allowed.Load(), Denied: p.stats.denied.Load(),
		AuthFailures: p.stats.authFailures.Load(), Intercepted: p.stats.intercepted.Load(),
		Sent: p.stats.sent.Load(), Received: p.stats.received.Load(),
	}
}

// Close stops the proxy: it closes its listeners (those given to Serve too),
// every session (their connections included) and the connections still in
// their handshake.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	var open []*Session
	for _, s := range p.sessions {
		open = append(open, s)
	}
	lns := p.listeners
	p.mu.Unlock()
	for _, ln := range lns {
		ln.Close()
	}
	p.loops.Wait()
	for _, s := range open {
		s.Close()
	}
	err := p.srv.Close()
	<-p.served
	p.closeRaw()
	return err
}

// ServeHTTP handles one proxy request: authentication, then CONNECT or a plain
// HTTP request in absolute form.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := p.authenticate(r)
	if s == nil || !s.begin() {
		p.stats.authFailures.Add(1)
		w.Header().Set("Proxy-Authenticate", `Basic realm="agentexec egress"`)
		http.Error(w, "agentexec egress: proxy credential missing, wrong or expired (use the HTTP_PROXY of this launch)", http.StatusProxyAuthRequired)
		return
	}
	defer s.end()
	if r.Method == http.MethodConnect {
		p.connect(s, w, r)
		return
	}
	p.forward(s, w, r)
}

// authenticate returns the session whose credential the request carries.
func (p *Proxy) authenticate(r *http.Request) *Session {
	h := r.Header.Get("Proxy-Authorization")
	enc, ok := strings.CutPrefix(h, "Basic ")
	if !ok {
		return nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return nil
	}
	id, token, ok := strings.Cut(string(raw), ":")
	if !ok {
		return nil
	}
	return p.lookup(id, token)
}

// lookup returns the open session of launch id if token is its credential.
func (p *Proxy) lookup(id, token string) *Session {
	p.mu.Lock()
	s := p.sessions[id]
	p.mu.Unlock()
	if s == nil || subtle.ConstantTimeCompare([]byte(token), []byte(s.token)) != 1 {
		return nil
	}
	return s
}

// target is a checked destination: the addresses to dial, in order.
type target struct {
	host  string
	port  uint16
	addrs []netip.Addr
	rule  string // the matching entry's Rule
}

// decide checks host:port against the session's lists; tunnel says whether
// network.ssh entries count (CONNECT) or only network.allow (plain HTTP).
func (p *Proxy) decide(ctx context.Context, s *Session, method, host string, port uint16, tunnel bool) (*target, *Denial) {
	e := s.egress
	deny := func(check, reason, addr, allow string) *Denial {
		return &Denial{Time: time.Now(), Rule: e.Field, Check: check, Method: method, Host: host, Port: port, Addr: addr, Reason: reason, Allow: allow}
	}
	entries := e.Allow
	if tunnel {
		entries = append(entries[:len(entries):len(entries)], e.SSH...)
	}
	literal := func(ip netip.Addr) *policy.Allow {
		for i := range entries {
			if entries[i].MatchesAddr(ip, port) {
				return &entries[i]
			}
		}
		return nil
	}
	host = strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), "."))
	if host == "" {
		return nil, deny(CheckRequest, "no destination host", "", "")
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return nil, deny(CheckRequest, "addresses with a zone are never allowed", "", "")
		}
		if a := literal(ip); a != nil {
			return &target{host: host, port: port, addrs: []netip.Addr{ip}, rule: a.Rule}, nil
		}
		return nil, deny(CheckDestination, "no allow entry names this address", "", suggest(ip.Unmap().String(), port, true))
	}
	var match *policy.Allow
	for i := range entries {
		if entries[i].MatchesName(host, port) {
			match = &entries[i]
			break
		}
	}
	if match == nil {
		reason := "no allow entry matches"
		if port == 22 && tunnel {
			reason = "no network.ssh entry matches"
		}
		return nil, deny(CheckDestination, reason, "", suggest(host, port, false))
	}
	lctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	addrs, err := p.resolver.LookupNetIP(lctx, "ip", host)
	if err == nil && len(addrs) == 0 {
		err = errors.New("no addresses")
	}
	if err != nil {
		return nil, deny(CheckResolve, "name does not resolve: "+err.Error(), "", "")
	}
	var out []netip.Addr
	for _, a := range addrs {
		a = a.WithZone("")
		if why := refused(a); why != "" && literal(a) == nil {
			// One refused address refuses the name: a rebinding attack often
			// answers with a public and a private address at once.
			return nil, deny(CheckAddress, fmt.Sprintf("resolves to %s, a %s address, which only an IP-literal entry may allow", a, why),
				a.String(), suggest(a.Unmap().String(), port, true))
		}
		if !containsAddr(out, a) {
			out = append(out, a)
		}
	}
	return &target{host: host, port: port, addrs: out, rule: match.Rule}, nil
}

func containsAddr(l []netip.Addr, a netip.Addr) bool {
	for _, x := range l {
		if x == a {
			return true
		}
	}
	return false
}

// suggest is the allow entry that would allow host:port.
func suggest(host string, port uint16, ip bool) string {
	if ip && strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port == 80 || port == 443 {
		if ip {
			return host + ":" + strconv.Itoa(int(port))
		}
		return host
	}
	if port == 22 {
		return host + " (in network.ssh)"
	}
	return host + ":" + strconv.Itoa(int(port))
}

// dialTarget dials the checked addresses in order: never a name, so what is
// dialled is what was checked.
func (p *Proxy) dialTarget(ctx context.Context, t *target) (net.Conn, string, error) {
	var errs []error
	for _, a := range t.addrs {
		addr := netip.AddrPortFrom(a, t.port).String()
		dctx, cancel := context.WithTimeout(ctx, p.timeout)
		c, err := p.dial(dctx, "tcp", addr)
		cancel()
		if err == nil {
			return c, addr, nil
		}
		errs = append(errs, err)
	}
	return nil, "", errors.Join(errs...)
}

// splitPort splits host:port; without a port, def (0: the port is required).
func splitPort(hostport string, def uint16) (string, uint16, error) {
	host, ps, err := net.SplitHostPort(hostport)
	if err != nil {
		switch {
		case def == 0:
			return "", 0, err
		case strings.HasPrefix(hostport, "[") && strings.HasSuffix(hostport, "]"):
			return hostport[1 : len(hostport)-1], def, nil
		case !strings.Contains(hostport, ":"):
			return hostport, def, nil
		}
		return "", 0, err
	}
	n, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || n == 0 {
		return "", 0, fmt.Errorf("bad port %q", ps)
	}
	return host, uint16(n), nil
}

// dialRecorded connects to an allowed target (dialTarget) and starts the record of
// the connection. A failed dial is recorded (in the session's allowed list, with
// its error) here; the caller answers it in its protocol.
func (p *Proxy) dialRecorded(ctx context.Context, s *Session, method string, t *target) (net.Conn, Conn, time.Time, error) {
	start := time.Now()
	rec := Conn{Time: start, Method: method, Host: t.host, Port: t.port, Rule: t.rule}
	up, addr, err := p.dialTarget(ctx, t)
	if err != nil {
		rec.Error = err.Error()
		s.allow(rec, start)
		return nil, rec, start, err
	}
	rec.Addr = addr
	return up, rec, start, nil
}

// refuse answers a denied request and records the denial.
func (p *Proxy) refuse(s *Session, w http.ResponseWriter, d *Denial) {
	s.deny(d)
	w.Header().Set("X-Agentexec-Denial", d.Check)
	http.Error(w, "agentexec egress: "+d.Error(), http.StatusForbidden)
}

// connect handles CONNECT: check, dial, then a tunnel (or an interception).
func (p *Proxy) connect(s *Session, w http.ResponseWriter, r *http.Request) {
	host, port, err := splitPort(r.Host, 0)
	if err != nil {
		p.refuse(s, w, &Denial{Time: time.Now(), Rule: "egress", Check: CheckRequest, Method: r.Method, Host: r.Host, Reason: "CONNECT needs host:port: " + err.Error()})
		return
	}
	t, d := p.decide(r.Context(), s, r.Method, host, port, true)
	if d != nil {
		p.refuse(s, w, d)
		return
	}
	secrets := s.secretsFor(t.host, port)
	up, rec, start, err := p.dialRecorded(r.Context(), s, r.Method, t)
	if err != nil {
		http.Error(w, "agentexec egress: dial "+hostPort(t.host, port)+": "+err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		up.Close()
		http.Error(w, "agentexec egress: bug: connection cannot be hijacked", http.StatusInternalServerError)
		return
	}
	client, brw, err := hj.Hijack()
	if err != nil {
		up.Close()
		return
	}
	if !s.track(client) || !s.track(up) {
		client.Close()
		up.Close()
		return
	}
	defer s.untrack(client)
	defer s.untrack(up)
	defer client.Close()
	defer up.Close()
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	cup := &countConn{Conn: up}
	if len(secrets) > 0 && p.ca != nil {
		rec.Intercepted = true
		p.stats.intercepted.Add(1)
		rec.Error = p.intercept(s, client, brw.Reader, cup, t, secrets)
	} else {
		rec.Error = p.tunnel(s, client, brw.Reader, cup, t, r.Method)
	}
	rec.Sent, rec.Received = cup.written.Load(), cup.read.Load()
	s.allow(rec, start)
}

// tunnel copies both ways. Bytes from the destination flow at once (ssh servers
// speak first); the tool's first bytes, when they are a TLS ClientHello, must
// name the CONNECT host as SNI (or none) before they are forwarded.
func (p *Proxy) tunnel(s *Session, client net.Conn, cr *bufio.Reader, up *countConn, t *target, method string) string {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(client, up)
		// The destination is done sending: end the tool's reads too.
		if tc, ok := client.(interface{ CloseWrite() error }); ok {
			_ = tc.CloseWrite()
		}
	}()
	if first, err := cr.Peek(1); err == nil && first[0] == 0x16 {
		sni, err := peekSNI(cr)
		bad := ""
		switch {
		case err != nil:
			bad = "a TLS ClientHello the proxy cannot read (" + err.Error() + ")"
		case sni != "" && !strings.EqualFold(strings.TrimSuffix(sni, "."), t.host):
			bad = fmt.Sprintf("TLS server name %q differs from the CONNECT host (domain fronting)", sni)
		}
		if bad != "" {
			s.deny(&Denial{Time: time.Now(), Rule: "egress", Check: CheckSNI, Method: method, Host: t.host, Port: t.port, Reason: bad})
			client.Close()
			up.Close()
			<-done
			return "refused: " + bad
		}
	}
	_, _ = io.Copy(up, cr)
	if tc, ok := up.Conn.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	} else {
		up.Close()
	}
	<-done
	return ""
}

// hopHeaders are not forwarded (RFC 9110 section 7.6.1, and the proxy's own).
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authorization", "Proxy-Authenticate", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func dropHop(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, k := range strings.Split(f, ",") {
			if k = strings.TrimSpace(k); k != "" {
				h.Del(k)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// forward handles a plain HTTP request in absolute form: one upstream
// connection per request, to the checked address.
func (p *Proxy) forward(s *Session, w http.ResponseWriter, r *http.Request) {
	bad := func(reason string) {
		p.refuse(s, w, &Denial{Time: time.Now(), Rule: "egress", Check: CheckRequest, Method: r.Method, Host: r.URL.Host, Reason: reason})
	}
	switch {
	case r.URL.Scheme == "https":
		bad("https URLs go through CONNECT (set HTTPS_PROXY, not only HTTP_PROXY)")
		return
	case r.URL.Scheme != "http" || r.URL.Host == "":
		bad("a proxy request needs an absolute http:// URL")
		return
	case r.Header.Get("Upgrade") != "":
		bad("protocol upgrades over plain HTTP are not proxied")
		return
	}
	host, port, err := splitPort(r.URL.Host, 80)
	if err != nil {
		bad("bad host in URL: " + err.Error())
		return
	}
	t, d := p.decide(r.Context(), s, r.Method, host, port, false)
	if d != nil {
		p.refuse(s, w, d)
		return
	}
	up, rec, start, err := p.dialRecorded(r.Context(), s, r.Method, t)
	if err != nil {
		http.Error(w, "agentexec egress: dial "+hostPort(t.host, port)+": "+err.Error(), http.StatusBadGateway)
		return
	}
	cup := &countConn{Conn: up}
	if !s.track(up) {
		up.Close()
		return
	}
	defer func() {
		s.untrack(up)
		up.Close()
		rec.Sent, rec.Received = cup.written.Load(), cup.read.Load()
		s.allow(rec, start)
	}()
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Header = r.Header.Clone()
	dropHop(out.Header)
	out.Close = true
	if err := out.Write(cup); err != nil {
		rec.Error = "write request: " + err.Error()
		http.Error(w, "agentexec egress: "+rec.Error, http.StatusBadGateway)
		return
	}
	br := bufio.NewReader(cup)
	resp, err := http.ReadResponse(br, out)
	for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
		resp, err = http.ReadResponse(br, out)
	}
	if err != nil {
		rec.Error = "read response: " + err.Error()
		http.Error(w, "agentexec egress: "+rec.Error, http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	dropHop(resp.Header)
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(flushWriter{w}, resp.Body); err != nil {
		rec.Error = "copy response: " + err.Error()
	}
}

type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

// countConn counts the bytes read from and written to a connection.
type countConn struct {
	net.Conn
	read, written atomic.Int64
}

func (c *countConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}

func (c *countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written.Add(int64(n))
	return n, err
}
