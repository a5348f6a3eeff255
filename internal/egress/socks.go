package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The accept path: one port for HTTP and SOCKS5.
//
// Every listener (the proxy's own and those given to Serve) has an accept loop;
// each connection's first byte decides what it speaks: 0x05 is a SOCKS5
// greeting (RFC 1928), anything else goes to the HTTP server (an HTTP request
// line starts with a letter). Tools thus need a Landlock rule for one port, and
// the forwarding listener inside a launch's network namespace serves both.

// handshakeTimeout bounds a connection's first byte and a SOCKS5 handshake (the
// HTTP server's ReadHeaderTimeout bounds an HTTP request's header).
const handshakeTimeout = 30 * time.Second

// Serve makes the proxy serve ln too (a listener in a launch's network
// namespace, for instance: egress_netns.go in the root package), HTTP and SOCKS5
// alike, until Close, which closes ln. After Close it closes ln and returns
// ErrClosed.
func (p *Proxy) Serve(ln net.Listener) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	p.listeners = append(p.listeners, ln)
	p.loops.Add(1)
	p.mu.Unlock()
	go p.acceptLoop(ln)
	return nil
}

func (p *Proxy) acceptLoop(ln net.Listener) {
	defer p.loops.Done()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.isClosed() {
				return
			}
			// Out of file descriptors and the like: wait as net/http does.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
				errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return
		}
		delay = 0
		if !p.trackRaw(c) {
			c.Close()
			return
		}
		go p.sniff(c)
	}
}

func (p *Proxy) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// trackRaw registers a connection in its handshake, which Close must close;
// false once the proxy is closed.
func (p *Proxy) trackRaw(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.raw[c] = struct{}{}
	p.rawWG.Add(1)
	return true
}

func (p *Proxy) untrackRaw(c net.Conn) {
	p.mu.Lock()
	delete(p.raw, c)
	p.mu.Unlock()
	p.rawWG.Done()
}

// closeRaw closes the connections still in their handshake and waits for
// their goroutines (Close, after closed is set: no new ones come).
func (p *Proxy) closeRaw() {
	p.mu.Lock()
	for c := range p.raw {
		c.Close()
	}
	p.mu.Unlock()
	p.rawWG.Wait()
}

// sniff reads a connection's first byte and hands it to SOCKS5 or HTTP.
func (p *Proxy) sniff(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(handshakeTimeout))
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	if err != nil {
		c.Close()
		p.untrackRaw(c)
		return
	}
	if first[0] == socksVersion {
		p.serveSOCKS(c, br)
		c.Close()
		p.untrackRaw(c)
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	// Handed to the HTTP server, which tracks it from its Accept on (its Close
	// closes it); until then it stays tracked here.
	if !p.hl.push(&peekConn{Conn: c, r: br}) {
		c.Close()
	}
	p.untrackRaw(c)
}

// peekConn is a connection whose first bytes were read into r.
type peekConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// CloseWrite half-closes the connection (the HTTP server and tunnels use it).
func (c *peekConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// connListener is the listener the HTTP server serves: connections the accept
// loops found to speak HTTP.
type connListener struct {
	addr net.Addr
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to Accept; false when the listener is closed.
func (l *connListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// SOCKS5 (RFC 1928) with username/password authentication (RFC 1929).
const (
	socksVersion      = 0x05
	socksAuthVersion  = 0x01
	socksMethodNone   = 0x00
	socksMethodPasswd = 0x02
	socksNoAcceptable = 0xff

	socksCmdConnect = 0x01
	socksCmdBind    = 0x02
	socksCmdUDP     = 0x03

	socksATYPIPv4   = 0x01
	socksATYPDomain = 0x03
	socksATYPIPv6   = 0x04

	socksSucceeded        = 0x00
	socksGeneralFailure   = 0x01
	socksNotAllowed       = 0x02
	socksNetUnreachable   = 0x03
	socksHostUnreachable  = 0x04
	socksConnRefused      = 0x05
	socksTTLExpired       = 0x06
	socksCmdNotSupported  = 0x07
	socksATYPNotSupported = 0x08
)

// MethodSOCKS5 is the Method of the Conns and Denials of SOCKS5 CONNECTs
// ("SOCKS5 BIND" and "SOCKS5 UDP ASSOCIATE" name the refused commands).
const MethodSOCKS5 = "SOCKS5"

// SOCKSURL is the launch's proxy URL for SOCKS5 clients,
// "socks5h://ID:TOKEN@127.0.0.1:PORT": the same port and credential as
// ProxyURL (RFC 1929 username and password). Env does not set ALL_PROXY to it
// (docs/network.md, "SOCKS5"); it is as secret as ProxyURL.
func (s *Session) SOCKSURL() string {
	u := url.URL{Scheme: "socks5h", User: url.UserPassword(s.id, s.token), Host: s.p.ln.Addr().String()}
	return u.String()
}

// serveSOCKS runs a SOCKS5 connection: greeting, username/password (the launch
// credential), one request. Only CONNECT is proxied, with the checks of an HTTP
// CONNECT (decide: allow lists, refused ranges, the proxy's own resolution),
// the SNI check and, for secrets' hosts, the interception. The caller closes c.
func (p *Proxy) serveSOCKS(c net.Conn, br *bufio.Reader) {
	s := p.socksAuth(c, br)
	if s == nil {
		return
	}
	if !s.begin() {
		return
	}
	defer s.end()
	if !s.track(c) {
		return
	}
	defer s.untrack(c)
	req, code, err := readSOCKSRequest(br)
	if err != nil {
		if code != 0 {
			s.deny(&Denial{Time: time.Now(), Rule: "egress", Check: CheckRequest, Method: MethodSOCKS5, Reason: err.Error()})
			_ = socksReply(c, code)
		}
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if req.cmd != socksCmdConnect {
		s.deny(&Denial{Time: time.Now(), Rule: "egress", Check: CheckRequest, Method: socksCmdName(req.cmd), Host: req.host, Port: req.port,
			Reason: socksCmdName(req.cmd) + " is not proxied (SOCKS5 CONNECT only)"})
		_ = socksReply(c, socksCmdNotSupported)
		return
	}
	if req.port == 0 {
		s.deny(&Denial{Time: time.Now(), Rule: "egress", Check: CheckRequest, Method: MethodSOCKS5, Host: req.host, Reason: "port 0"})
		_ = socksReply(c, socksNotAllowed)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t, d := p.decide(ctx, s, MethodSOCKS5, req.host, req.port, true)
	if d != nil {
		s.deny(d)
		code := byte(socksNotAllowed)
		if d.Check == CheckResolve {
			code = socksHostUnreachable
		}
		_ = socksReply(c, code)
		return
	}
	secrets := s.secretsFor(t.host, t.port)
	up, rec, start, err := p.dialRecorded(ctx, s, MethodSOCKS5, t)
	if err != nil {
		_ = socksReply(c, dialReplyCode(err))
		return
	}
	if !s.track(up) {
		up.Close()
		return
	}
	defer s.untrack(up)
	defer up.Close()
	if err := socksReply(c, socksSucceeded); err != nil {
		rec.Error = "reply: " + err.Error()
		s.allow(rec, start)
		return
	}
	cup := &countConn{Conn: up}
	if len(secrets) > 0 && p.ca != nil {
		rec.Intercepted = true
		p.stats.intercepted.Add(1)
		rec.Error = p.intercept(s, c, br, cup, t, secrets)
	} else {
		rec.Error = p.tunnel(s, c, br, cup, t, MethodSOCKS5)
	}
	rec.Sent, rec.Received = cup.written.Load(), cup.read.Load()
	s.allow(rec, start)
}

// socksAuth reads the greeting and the username/password subnegotiation and
// returns the session whose credential they carry; nil (after answering, and
// counted in Stats.AuthFailures) otherwise. A malformed greeting gets no answer.
func (p *Proxy) socksAuth(c net.Conn, br *bufio.Reader) *Session {
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil || hdr[0] != socksVersion || hdr[1] == 0 {
		return nil
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(br, methods); err != nil {
		return nil
	}
	offered := false
	for _, m := range methods {
		offered = offered || m == socksMethodPasswd
	}
	if !offered {
		// No credential offered (method 0, "no authentication", or GSSAPI): the
		// proxy has no launch to check the request against.
		p.stats.authFailures.Add(1)
		_, _ = c.Write([]byte{socksVersion, socksNoAcceptable})
		return nil
	}
	if _, err := c.Write([]byte{socksVersion, socksMethodPasswd}); err != nil {
		return nil
	}
	// RFC 1929: VER 1, ULEN, UNAME, PLEN, PASSWD.
	var v [2]byte
	if _, err := io.ReadFull(br, v[:]); err != nil || v[0] != socksAuthVersion {
		return nil
	}
	user := make([]byte, v[1])
	if _, err := io.ReadFull(br, user); err != nil {
		return nil
	}
	var plen [1]byte
	if _, err := io.ReadFull(br, plen[:]); err != nil {
		return nil
	}
	pass := make([]byte, plen[0])
	if _, err := io.ReadFull(br, pass); err != nil {
		return nil
	}
	s := p.lookup(string(user), string(pass))
	if s == nil {
		p.stats.authFailures.Add(1)
		_, _ = c.Write([]byte{socksAuthVersion, 0x01})
		return nil
	}
	if _, err := c.Write([]byte{socksAuthVersion, 0x00}); err != nil {
		return nil
	}
	return s
}

type socksRequest struct {
	cmd  byte
	host string // a name, or an address in netip's form
	port uint16
}

// readSOCKSRequest reads VER CMD RSV ATYP DST.ADDR DST.PORT. On a request the
// proxy cannot read, code is the reply to send (0: none, the connection is
// just closed).
func readSOCKSRequest(br *bufio.Reader) (socksRequest, byte, error) {
	var r socksRequest
	var h [4]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return r, 0, err
	}
	if h[0] != socksVersion {
		return r, 0, fmt.Errorf("SOCKS version %d in a request", h[0])
	}
	if h[2] != 0 {
		return r, socksGeneralFailure, fmt.Errorf("reserved byte %#x in a SOCKS5 request is not zero", h[2])
	}
	r.cmd = h[1]
	switch h[3] {
	case socksATYPIPv4:
		var a [4]byte
		if _, err := io.ReadFull(br, a[:]); err != nil {
			return r, 0, err
		}
		r.host = netip.AddrFrom4(a).String()
	case socksATYPIPv6:
		var a [16]byte
		if _, err := io.ReadFull(br, a[:]); err != nil {
			return r, 0, err
		}
		r.host = netip.AddrFrom16(a).String()
	case socksATYPDomain:
		var n [1]byte
		if _, err := io.ReadFull(br, n[:]); err != nil {
			return r, 0, err
		}
		name := make([]byte, n[0])
		if _, err := io.ReadFull(br, name); err != nil {
			return r, 0, err
		}
		if n[0] == 0 {
			return r, socksGeneralFailure, errors.New("empty domain name in a SOCKS5 request")
		}
		for _, b := range name {
			// Printable ASCII without space: a name the allow lists could match
			// (they are ASCII; international names in their xn-- form).
			if b <= ' ' || b >= 0x7f {
				return r, socksGeneralFailure, fmt.Errorf("domain name %q in a SOCKS5 request: not printable ASCII", name)
			}
		}
		r.host = string(name)
	default:
		return r, socksATYPNotSupported, fmt.Errorf("address type %d in a SOCKS5 request", h[3])
	}
	var port [2]byte
	if _, err := io.ReadFull(br, port[:]); err != nil {
		return r, 0, err
	}
	r.port = uint16(port[0])<<8 | uint16(port[1])
	return r, 0, nil
}

func socksCmdName(cmd byte) string {
	switch cmd {
	case socksCmdConnect:
		return MethodSOCKS5
	case socksCmdBind:
		return "SOCKS5 BIND"
	case socksCmdUDP:
		return "SOCKS5 UDP ASSOCIATE"
	}
	return "SOCKS5 command " + strconv.Itoa(int(cmd))
}

// socksReply answers a request; the bound address is always 0.0.0.0:0 (CONNECT
// clients do not use it, and the proxy's outgoing address is none of the tool's
// business).
func socksReply(c net.Conn, code byte) error {
	_, err := c.Write([]byte{socksVersion, code, 0, socksATYPIPv4, 0, 0, 0, 0, 0, 0})
	return err
}

// dialReplyCode is the SOCKS5 reply for a failed dial.
func dialReplyCode(err error) byte {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return socksConnRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return socksNetUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH):
		return socksHostUnreachable
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return socksTTLExpired
	}
	return socksGeneralFailure
}
