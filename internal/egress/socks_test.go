package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

// socksCred splits a session's SOCKS URL into its user and password.
func socksCred(t *testing.T, s *Session) (string, string) {
	t.Helper()
	u, err := url.Parse(s.SOCKSURL())
	if err != nil || u.Scheme != "socks5h" {
		t.Fatalf("SOCKSURL %q: %v", u.Redacted(), err)
	}
	pw, _ := u.User.Password()
	return u.User.Username(), pw
}

// rawSOCKS is a hand-written SOCKS5 client that reports the server's reply
// code: greeting with methods, username/password when the server picks it, one
// request. It returns the connection (tunnel) on success.
type rawSOCKS struct {
	methods    []byte
	user, pass string
	cmd, atyp  byte
	addr       []byte // DST.ADDR as sent (with the length byte for a domain)
	port       uint16
}

// errAuthRefused is a method or credential refusal by the server.
var errAuthRefused = errors.New("authentication refused")

func (r rawSOCKS) dial(t *testing.T, proxyAddr string) (net.Conn, byte, error) {
	t.Helper()
	c, err := net.Dial("tcp", proxyAddr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fail := func(code byte, err error) (net.Conn, byte, error) {
		c.Close()
		return nil, code, err
	}
	methods := r.methods
	if methods == nil {
		methods = []byte{socksMethodPasswd}
	}
	if _, err := c.Write(append([]byte{5, byte(len(methods))}, methods...)); err != nil {
		return fail(0, err)
	}
	var sel [2]byte
	if _, err := io.ReadFull(c, sel[:]); err != nil {
		return fail(0, fmt.Errorf("method selection: %w", err))
	}
	switch sel[1] {
	case socksMethodPasswd:
		msg := append([]byte{1, byte(len(r.user))}, r.user...)
		msg = append(append(msg, byte(len(r.pass))), r.pass...)
		if _, err := c.Write(msg); err != nil {
			return fail(0, err)
		}
		var st [2]byte
		if _, err := io.ReadFull(c, st[:]); err != nil {
			return fail(0, fmt.Errorf("auth status: %w", err))
		}
		if st[1] != 0 {
			return fail(0, errAuthRefused)
		}
	case socksNoAcceptable:
		return fail(0, errAuthRefused)
	default:
		return fail(0, fmt.Errorf("server chose method %#x", sel[1]))
	}
	cmd := r.cmd
	if cmd == 0 {
		cmd = socksCmdConnect
	}
	req := []byte{5, cmd, 0, r.atyp}
	if r.atyp == socksATYPIPv4 || r.atyp == socksATYPIPv6 || r.atyp == socksATYPDomain {
		// (After an unknown address type the server cannot know the request's
		// length: it answers and closes, so nothing more is sent, or the close
		// with unread bytes would be a reset that can overtake the answer.)
		req = append(append(req, r.addr...), byte(r.port>>8), byte(r.port))
	}
	if _, err := c.Write(req); err != nil {
		return fail(0, err)
	}
	var rep [10]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		return fail(0, fmt.Errorf("reply: %w", err))
	}
	if rep[1] != socksSucceeded {
		return fail(rep[1], fmt.Errorf("reply %#x", rep[1]))
	}
	_ = c.SetDeadline(time.Time{})
	return c, 0, nil
}

func domainAddr(name string) []byte { return append([]byte{byte(len(name))}, name...) }

// socksGet dials target through the proxy with x/net/proxy's SOCKS5 client and
// the session's credential (nil auth: none offered), and GETs / over the tunnel.
func socksGet(p *Proxy, auth *proxy.Auth, target string) (string, error) {
	d, err := proxy.SOCKS5("tcp", p.Addr().String(), auth, proxy.Direct)
	if err != nil {
		return "", err
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.(proxy.ContextDialer).DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}}
	resp, err := c.Get("http://" + target + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// TestSocksCurl: curl's own SOCKS5 client (--socks5-hostname, the name resolved
// by the proxy, and ALL_PROXY=socks5h://) reaches an allowed HTTPS origin on the
// proxy's one port, with the report of an HTTP CONNECT; without the credential
// (the control of the credential) and to an unlisted name it is refused, and
// the origin sees nothing.
func TestSocksCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skipf("curl not installed (%v): make setup installs it", err)
	}
	o := newOrigin(t, true)
	port := o.port()
	ca := filepath.Join(t.TempDir(), "origin.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: o.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newProxy(t, Config{})
	e.resolve("example.com", "127.0.0.1")
	s, err := e.p.Session("l1", egressOf(t, []string{fmt.Sprintf("example.com:%d", port), fmt.Sprintf("127.0.0.1:%d", port)}), nil)
	if err != nil {
		t.Fatal(err)
	}
	user, pass := socksCred(t, s)
	target := fmt.Sprintf("https://example.com:%d/x", port)
	curlRun := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(curl, append([]string{"-sS", "--max-time", "10", "--cacert", ca}, args...)...)
		cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := curlRun(nil, "--socks5-hostname", e.p.Addr().String(), "--proxy-user", user+":"+pass, target)
	if err != nil || !strings.HasPrefix(out, "hello from example.com") {
		t.Fatalf("curl --socks5-hostname: %v\n%s", err, out)
	}
	// The URL form, from the environment (HTTPS_PROXY unset: curl takes ALL_PROXY).
	out, err = curlRun([]string{"ALL_PROXY=" + s.SOCKSURL()}, target)
	if err != nil || !strings.HasPrefix(out, "hello from example.com") {
		t.Fatalf("curl with ALL_PROXY=socks5h://…: %v\n%s", err, out)
	}
	// Controls: no credential; an unlisted name.
	if out, err := curlRun(nil, "--socks5-hostname", e.p.Addr().String(), target); err == nil {
		t.Errorf("curl without the credential got through: %s", out)
	}
	e.resolve("other.test", "127.0.0.1")
	if out, err := curlRun(nil, "--socks5-hostname", e.p.Addr().String(), "--proxy-user", user+":"+pass,
		fmt.Sprintf("https://other.test:%d/", port)); err == nil {
		t.Errorf("curl to an unlisted name got through: %s", out)
	}
	rep := s.Close()
	if len(rep.Allowed) != 2 || len(rep.Denied) != 1 {
		t.Fatalf("report %+v", rep)
	}
	for _, c := range rep.Allowed {
		if c.Method != MethodSOCKS5 || c.Host != "example.com" || c.Port != port || c.Addr != fmt.Sprintf("127.0.0.1:%d", port) ||
			c.Rule != "tools.t.network.allow[0]" || c.Sent < 200 || c.Received < 500 || c.Error != "" {
			t.Errorf("conn %+v", c)
		}
	}
	if d := rep.Denied[0]; d.Check != CheckDestination || d.Host != "other.test" || d.Method != MethodSOCKS5 || d.Allow != fmt.Sprintf("other.test:%d", port) {
		t.Errorf("denial %+v", d)
	}
	if rep.Sent != rep.Allowed[0].Sent+rep.Allowed[1].Sent || rep.Received != rep.Allowed[0].Received+rep.Allowed[1].Received {
		t.Errorf("report totals %d/%d", rep.Sent, rep.Received)
	}
	if o.count() != 2 || e.dns.count("other.test") != 0 {
		t.Errorf("origin hits %d (want 2), other.test resolved %d times (want 0)", o.count(), e.dns.count("other.test"))
	}
	if st := e.p.Stats(); st.AuthFailures != 1 || st.Allowed != 2 || st.Denied != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestSocksChecks: a SOCKS5 CONNECT gets the checks of an HTTP CONNECT, seen
// through a real client (x/net/proxy): names resolved by the proxy and refused
// when they resolve to a refused range (and rebinding cannot move a
// connection), IPv4 and IPv6 literals refused unless an IP-literal entry names
// them (the controls), network.ssh hosts on their port only.
func TestSocksChecks(t *testing.T) {
	o := newOrigin(t, false)
	port := o.port()
	e := newProxy(t, Config{})
	e.resolve("rebind.test", "203.0.113.7")
	e.resolve("rebind.test", "127.0.0.1")
	e.resolve("private.test", "10.1.2.3")
	e.resolve("git.test", "203.0.113.9")
	e.net.redirect["203.0.113.7:80"] = o.Listener.Addr().String()
	e.net.redirect["10.1.2.3:80"] = o.Listener.Addr().String()
	e.net.redirect["203.0.113.9:22"] = o.Listener.Addr().String()
	e.net.redirect["203.0.113.9:443"] = o.Listener.Addr().String()
	s, _ := e.p.Session("l1", egressOf(t, []string{"rebind.test", "private.test", "git.test", fmt.Sprintf("127.0.0.1:%d", port)}, "git.test"), nil)
	user, pass := socksCred(t, s)
	auth := &proxy.Auth{User: user, Password: pass}

	// A name that resolves to a public address: allowed, dialled as checked.
	if body, err := socksGet(e.p, auth, "rebind.test:80"); err != nil || !strings.HasPrefix(body, "hello") {
		t.Fatalf("allowed name: %q %v", body, err)
	}
	// The same name now answers loopback: refused (rebinding).
	if _, err := socksGet(e.p, auth, "rebind.test:80"); err == nil {
		t.Error("rebound name allowed")
	}
	// A name that resolves to RFC 1918 space.
	if _, err := socksGet(e.p, auth, "private.test:80"); err == nil {
		t.Error("name resolving to 10.1.2.3 allowed")
	}
	// Literals: 127.0.0.1 on the named port is allowed (the control), on another
	// port and as ::1 it is not.
	if body, err := socksGet(e.p, auth, fmt.Sprintf("127.0.0.1:%d", port)); err != nil || !strings.HasPrefix(body, "hello") {
		t.Fatalf("named IPv4 literal: %q %v", body, err)
	}
	if _, err := socksGet(e.p, auth, fmt.Sprintf("[::1]:%d", port)); err == nil {
		t.Error("IPv6 loopback literal allowed without an entry")
	}
	if _, err := socksGet(e.p, auth, "169.254.169.254:80"); err == nil {
		t.Error("metadata address allowed")
	}
	// network.ssh: git.test on 22 is reachable; the allow entry's ports (443/80)
	// are not 22 and its ssh entry's 22 is not 443 by itself — both are listed here.
	if body, err := socksGet(e.p, auth, "git.test:22"); err != nil || !strings.HasPrefix(body, "hello") {
		t.Fatalf("network.ssh host on port 22: %q %v", body, err)
	}
	rep := s.Close()
	var checks []string
	for _, d := range rep.Denied {
		checks = append(checks, d.Check+" "+d.Host+" "+d.Addr)
	}
	want := []string{"address rebind.test 127.0.0.1", "address private.test 10.1.2.3", "destination ::1 ", "destination 169.254.169.254 "}
	if strings.Join(checks, "|") != strings.Join(want, "|") {
		t.Errorf("denials %q, want %q", checks, want)
	}
	for _, d := range rep.Denied {
		if d.Method != MethodSOCKS5 || d.Rule != "tools.t.network.allow" {
			t.Errorf("denial %+v", d)
		}
	}
	if got := e.net.addrs(); strings.Join(got, " ") != fmt.Sprintf("203.0.113.7:80 127.0.0.1:%d 203.0.113.9:22", port) {
		t.Errorf("dialled %v", got)
	}
	// (Connections are reported when they end, so in no fixed order.)
	i := slices.IndexFunc(rep.Allowed, func(c Conn) bool { return c.Host == "git.test" })
	if len(rep.Allowed) != 3 || i < 0 || rep.Allowed[i].Rule != "tools.t.network.ssh[0]" || rep.Allowed[i].Port != 22 || rep.Allowed[i].Received == 0 {
		t.Errorf("allowed %+v", rep.Allowed)
	}

	// Control for network.ssh: without the ssh entry, port 22 is refused even
	// though an allow entry names the host.
	s2, _ := e.p.Session("l2", egressOf(t, []string{"git.test"}), nil)
	u2, p2 := socksCred(t, s2)
	if _, err := socksGet(e.p, &proxy.Auth{User: u2, Password: p2}, "git.test:22"); err == nil {
		t.Error("port 22 reached without a network.ssh entry")
	}
	if rep := s2.Close(); len(rep.Denied) != 1 || rep.Denied[0].Allow != "git.test (in network.ssh)" {
		t.Errorf("report %+v", rep)
	}
}

// TestSocksProtocol: reply codes and refusals of the protocol itself, with a
// hand-written client: no credential offered (0xFF), another launch's
// credential, a revoked one, BIND and UDP ASSOCIATE (0x07), an unknown address
// type (0x08), a refused destination (0x02), an unresolvable name (0x04) and a
// refused dial (0x05); the control is the same request with the right
// credential, which succeeds.
func TestSocksProtocol(t *testing.T) {
	o := newOrigin(t, false)
	port := o.port()
	e := newProxy(t, Config{})
	e.resolve("a.test", "127.0.0.1")
	lit := fmt.Sprintf("127.0.0.1:%d", port)
	a, _ := e.p.Session("launch-a", egressOf(t, []string{fmt.Sprintf("a.test:%d", port), lit}), nil)
	b, _ := e.p.Session("launch-b", egressOf(t, []string{"b.test"}), nil)
	ua, pa := socksCred(t, a)
	ub, pb := socksCred(t, b)
	addr := e.p.Addr().String()
	ok := rawSOCKS{user: ua, pass: pa, atyp: socksATYPDomain, addr: domainAddr("a.test"), port: port}

	// Control: the launch's own credential.
	c, _, err := ok.dial(t, addr)
	if err != nil {
		t.Fatalf("own credential: %v", err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: a.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("tunnel: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("tunnel: status %d", resp.StatusCode)
	}
	c.Close()

	for _, tc := range []struct {
		name string
		r    rawSOCKS
		code byte
		auth bool // refused at authentication
	}{
		{"no credential offered", rawSOCKS{methods: []byte{socksMethodNone}, atyp: socksATYPDomain, addr: domainAddr("a.test"), port: port}, 0, true},
		{"another launch's token", rawSOCKS{user: ua, pass: pb, atyp: socksATYPDomain, addr: domainAddr("a.test"), port: port}, 0, true},
		{"empty password", rawSOCKS{user: ua, atyp: socksATYPDomain, addr: domainAddr("a.test"), port: port}, 0, true},
		{"BIND", rawSOCKS{user: ua, pass: pa, cmd: socksCmdBind, atyp: socksATYPIPv4, addr: []byte{127, 0, 0, 1}, port: port}, socksCmdNotSupported, false},
		{"UDP ASSOCIATE", rawSOCKS{user: ua, pass: pa, cmd: socksCmdUDP, atyp: socksATYPIPv4, addr: []byte{0, 0, 0, 0}, port: 0}, socksCmdNotSupported, false},
		{"unknown address type", rawSOCKS{user: ua, pass: pa, atyp: 9, addr: []byte{1, 2, 3, 4}, port: port}, socksATYPNotSupported, false},
		{"unlisted name", rawSOCKS{user: ua, pass: pa, atyp: socksATYPDomain, addr: domainAddr("evil.test"), port: 443}, socksNotAllowed, false},
		{"IPv6 literal", rawSOCKS{user: ua, pass: pa, atyp: socksATYPIPv6, addr: netip.MustParseAddr("::1").AsSlice(), port: port}, socksNotAllowed, false},
		{"launch b's rules", rawSOCKS{user: ub, pass: pb, atyp: socksATYPDomain, addr: domainAddr("a.test"), port: port}, socksNotAllowed, false},
		{"port 0", rawSOCKS{user: ua, pass: pa, atyp: socksATYPDomain, addr: domainAddr("a.test"), port: 0}, socksNotAllowed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, code, err := tc.r.dial(t, addr)
			if err == nil {
				c.Close()
				t.Fatal("request succeeded")
			}
			if tc.auth != errors.Is(err, errAuthRefused) || code != tc.code {
				t.Fatalf("err %v code %#x, want code %#x (refused at authentication: %v)", err, code, tc.code, tc.auth)
			}
		})
	}
	// An unresolvable name: host unreachable. A listed address nobody listens
	// on: connection refused (recorded as an allowed connection with its error).
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	deadPort := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	c2, _ := e.p.Session("launch-c", egressOf(t, []string{"nx.test", fmt.Sprintf("127.0.0.1:%d", deadPort)}), nil)
	uc, pc := socksCred(t, c2)
	if _, code, _ := (rawSOCKS{user: uc, pass: pc, atyp: socksATYPDomain, addr: domainAddr("nx.test"), port: 443}).dial(t, addr); code != socksHostUnreachable {
		t.Errorf("unresolvable name: code %#x", code)
	}
	if _, code, _ := (rawSOCKS{user: uc, pass: pc, atyp: socksATYPIPv4, addr: []byte{127, 0, 0, 1}, port: deadPort}).dial(t, addr); code != socksConnRefused {
		t.Errorf("refused dial: code %#x", code)
	}
	if rep := c2.Close(); len(rep.Denied) != 1 || rep.Denied[0].Check != CheckResolve || len(rep.Allowed) != 1 || rep.Allowed[0].Error == "" {
		t.Errorf("report %+v", rep)
	}
	// A revoked credential.
	a.Close()
	if _, _, err := ok.dial(t, addr); !errors.Is(err, errAuthRefused) {
		t.Errorf("after Close: %v, want an authentication refusal", err)
	}
	repB := b.Close()
	if len(repB.Denied) != 1 || repB.Denied[0].Host != "a.test" {
		t.Errorf("launch b's report %+v", repB)
	}
	if st := e.p.Stats(); st.AuthFailures != 4 {
		t.Errorf("auth failures %d, want 4", st.AuthFailures)
	}
	if o.count() != 1 {
		t.Errorf("origin hits %d, want 1 (the control)", o.count())
	}
}

// TestSocksReportCommands: refused commands are denials in the launch's report.
func TestSocksReportCommands(t *testing.T) {
	e := newProxy(t, Config{})
	s, _ := e.p.Session("l", egressOf(t, []string{"x.test"}), nil)
	u, p := socksCred(t, s)
	for _, cmd := range []byte{socksCmdBind, socksCmdUDP} {
		if _, code, _ := (rawSOCKS{user: u, pass: p, cmd: cmd, atyp: socksATYPDomain, addr: domainAddr("x.test"), port: 443}).dial(t, e.p.Addr().String()); code != socksCmdNotSupported {
			t.Errorf("command %d: code %#x", cmd, code)
		}
	}
	rep := s.Close()
	if len(rep.Denied) != 2 || rep.Denied[0].Method != "SOCKS5 BIND" || rep.Denied[1].Method != "SOCKS5 UDP ASSOCIATE" ||
		rep.Denied[0].Check != CheckRequest || rep.Denied[0].Host != "x.test" || rep.Denied[0].Rule != "egress" {
		t.Errorf("denials %+v", rep.Denied)
	}
	if len(e.net.addrs()) != 0 {
		t.Errorf("dialled %v", e.net.addrs())
	}
}

// TestSocksMalformed: malformed greetings end in a clean close without a
// reply, and the HTTP side of the port still works afterwards (the control).
func TestSocksMalformed(t *testing.T) {
	e := newProxy(t, Config{})
	for _, msg := range [][]byte{
		{5, 0},                    // no methods
		{5, 2, 2},                 // methods cut short, then EOF
		{5, 1, 2, 9, 0},           // username/password subnegotiation of version 9
		{5, 1, 2, 1, 3, 'a', 'b'}, // cut short inside the username
	} {
		c, err := net.Dial("tcp", e.p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write(msg)
		c.(*net.TCPConn).CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		// The method selection (5 2) may precede the close; nothing else.
		if err != nil || (len(got) != 0 && string(got) != "\x05\x02") {
			t.Errorf("greeting %v: got %v, %v; want a close", msg, got, err)
		}
	}
	s, _ := e.p.Session("l", egressOf(t, []string{"x.test"}), nil)
	defer s.Close()
	if code, _, err := get(client(s.ProxyURL(), nil, ""), "http://x.test/"); code != http.StatusForbidden {
		t.Errorf("HTTP on the same port after malformed SOCKS: %d %v, want the proxy's 403 (x.test does not resolve)", code, err)
	}
}

// TestSocksServeAndClose: a listener given to Serve speaks HTTP and SOCKS5 like
// the proxy's own; Close closes it, ends handshakes in progress and leaves no
// goroutine behind.
func TestSocksServeAndClose(t *testing.T) {
	before := runtime.NumGoroutine()
	o := newOrigin(t, false)
	dns := &fakeDNS{answers: map[string][][]netip.Addr{}, calls: map[string]int{}}
	p, err := New(Config{Resolver: dns, Dial: (&fakeNet{}).Dial})
	if err != nil {
		t.Fatal(err)
	}
	extra, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Serve(extra); err != nil {
		t.Fatal(err)
	}
	s, _ := p.Session("l", egressOf(t, []string{"127.0.0.1:" + strconv.Itoa(int(o.port()))}), nil)
	u, pw := socksCred(t, s)
	c, _, err := (rawSOCKS{user: u, pass: pw, atyp: socksATYPIPv4, addr: []byte{127, 0, 0, 1}, port: o.port()}).dial(t, extra.Addr().String())
	if err != nil {
		t.Fatalf("SOCKS5 on the extra listener: %v", err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("tunnel: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("tunnel: status %d", resp.StatusCode)
	}
	c.Close()
	pu, _ := url.Parse(s.ProxyURL())
	pu.Host = extra.Addr().String()
	if code, _, err := get(client(pu.String(), nil, ""), fmt.Sprintf("http://127.0.0.1:%d/", o.port())); code != 200 {
		t.Fatalf("HTTP on the extra listener: %d %v", code, err)
	}
	// Connections left in the middle: a SOCKS5 greeting without the rest, an
	// HTTP request line without headers, an open tunnel.
	half, _ := net.Dial("tcp", extra.Addr().String())
	half.Write([]byte{5, 1})
	defer half.Close()
	halfHTTP, _ := net.Dial("tcp", p.Addr().String())
	halfHTTP.Write([]byte("GET http://x/ HTTP/1.1\r\n"))
	defer halfHTTP.Close()
	tun, _, err := (rawSOCKS{user: u, pass: pw, atyp: socksATYPIPv4, addr: []byte{127, 0, 0, 1}, port: o.port()}).dial(t, p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer tun.Close()

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []net.Conn{half, halfHTTP, tun} {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("a connection left open by Close: %v", err)
		}
	}
	for _, a := range []string{extra.Addr().String(), p.Addr().String()} {
		if c, err := net.Dial("tcp", a); err == nil {
			c.Close()
			t.Errorf("%s still accepts after Close", a)
		}
	}
	if err := p.Serve(extra); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Close: %v", err)
	}
	o.Close()
	// Goroutines of the proxy end with Close (the test's own HTTP clients'
	// idle connections were not kept: DisableKeepAlives).
	var now int
	for range 500 {
		if now = runtime.NumGoroutine(); now <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<16)
	t.Errorf("goroutines: %d before, %d after Close\n%s", before, now, buf[:runtime.Stack(buf, true)])
}

// TestSocksSecrets: a SOCKS5 tunnel to a secret's host is intercepted like an
// HTTP CONNECT (the origin receives the real value, the tool only had the
// placeholder); to another destination it is tunnelled untouched (the origin
// receives the placeholder: the control).
func TestSocksSecrets(t *testing.T) {
	const real = "real-token-socks"
	e, s, sec, api, other := secretsFixture(t, real) // proxy_test.go
	bundle, err := os.ReadFile(e.p.CABundle())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(bundle)
	u, pw := socksCred(t, s)
	d, _ := proxy.SOCKS5("tcp", e.p.Addr().String(), &proxy.Auth{User: u, Password: pw}, proxy.Direct)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext:       d.(proxy.ContextDialer).DialContext,
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		DisableKeepAlives: true,
	}}
	for _, target := range []string{fmt.Sprintf("https://example.com:%d/", api.port()), fmt.Sprintf("https://127.0.0.1:%d/", other.port())} {
		req, _ := http.NewRequest("GET", target, nil)
		req.Header.Set("Authorization", "Bearer "+sec.Placeholder())
		resp, err := c.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s over SOCKS5: %v", target, err)
		}
		resp.Body.Close()
	}
	rep := s.Close()
	api.mu.Lock()
	gotAPI := slices.Clone(api.auths)
	api.mu.Unlock()
	other.mu.Lock()
	gotOther := slices.Clone(other.auths)
	other.mu.Unlock()
	if len(gotAPI) != 1 || gotAPI[0] != "Bearer "+real {
		t.Errorf("the secret's host received %q, want the real value", gotAPI)
	}
	if len(gotOther) != 1 || gotOther[0] != "Bearer "+sec.Placeholder() {
		t.Errorf("the other destination received %q, want the placeholder", gotOther)
	}
	if len(rep.Allowed) != 2 {
		t.Fatalf("report %+v", rep.Allowed)
	}
	for _, c := range rep.Allowed {
		if c.Intercepted != (c.Host == "example.com") || c.Method != MethodSOCKS5 {
			t.Errorf("conn %+v: intercepted only for the secret's host", c)
		}
	}
}
