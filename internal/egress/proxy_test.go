package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/agentexec/agentexec/policy"
)

// fakeDNS resolves from a map: answers[name] is a list of answers, one per
// lookup (the last repeats). No test lookup reaches a real resolver.
type fakeDNS struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	calls   map[string]int
}

func (r *fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := min(r.calls[host], len(a)-1)
	r.calls[host]++
	return a[i], nil
}

func (r *fakeDNS) count(host string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[host]
}

// fakeNet dials loopback only: addresses in redirect go to a test server on
// loopback, any other non-loopback address fails. It records every address
// the proxy dialled, so a test sees what was connected to (and that it was an
// address, never a name).
type fakeNet struct {
	mu       sync.Mutex
	redirect map[string]string
	dialled  []string
}

func (n *fakeNet) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	n.dialled = append(n.dialled, addr)
	to, ok := n.redirect[addr]
	n.mu.Unlock()
	if !ok {
		ap, err := netip.ParseAddrPort(addr)
		if err != nil {
			return nil, fmt.Errorf("fakeNet: the proxy dialled %q, not an address", addr)
		}
		if !ap.Addr().IsLoopback() {
			return nil, fmt.Errorf("fakeNet: %s is off this machine; tests never go there", addr)
		}
		to = addr
	}
	var d net.Dialer
	return d.DialContext(ctx, network, to)
}

func (n *fakeNet) addrs() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.dialled...)
}

// origin is a loopback test server that counts requests and keeps the last
// Authorization header it received.
type origin struct {
	*httptest.Server
	mu    sync.Mutex
	hits  int
	auths []string
}

func newOrigin(t *testing.T, tlsOn bool) *origin {
	o := &origin{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.hits++
		o.auths = append(o.auths, r.Header.Get("Authorization"))
		o.mu.Unlock()
		io.WriteString(w, "hello from "+r.Host)
	})
	if tlsOn {
		o.Server = httptest.NewTLSServer(h)
	} else {
		o.Server = httptest.NewServer(h)
	}
	t.Cleanup(o.Close)
	return o
}

func (o *origin) port() uint16 {
	return uint16(o.Listener.Addr().(*net.TCPAddr).Port)
}

func (o *origin) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.hits
}

func egressOf(t *testing.T, allow []string, ssh ...string) *policy.Egress {
	t.Helper()
	e := &policy.Egress{Field: "tools.t.network.allow"}
	for i, s := range allow {
		a, err := policy.ParseAllow(fmt.Sprintf("tools.t.network.allow[%d]", i), s, policy.DefaultAllowPorts)
		if err != nil {
			t.Fatal(err)
		}
		e.Allow = append(e.Allow, a...)
	}
	for i, s := range ssh {
		a, err := policy.ParseAllow(fmt.Sprintf("tools.t.network.ssh[%d]", i), s, policy.DefaultSSHPorts)
		if err != nil {
			t.Fatal(err)
		}
		e.SSH = append(e.SSH, a...)
	}
	return e
}

type env struct {
	p   *Proxy
	dns *fakeDNS
	net *fakeNet
}

func newProxy(t *testing.T, cfg Config) *env {
	t.Helper()
	e := &env{dns: &fakeDNS{answers: map[string][][]netip.Addr{}, calls: map[string]int{}}, net: &fakeNet{redirect: map[string]string{}}}
	cfg.Resolver, cfg.Dial = e.dns, e.net.Dial
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	e.p = p
	return e
}

func (e *env) resolve(name string, answers ...string) {
	var l []netip.Addr
	for _, a := range answers {
		l = append(l, netip.MustParseAddr(a))
	}
	e.dns.answers[name] = append(e.dns.answers[name], l)
}

// client is an HTTP client that uses proxyURL and trusts roots.
func client(proxyURL string, roots *x509.CertPool, serverName string) *http.Client {
	u, _ := url.Parse(proxyURL)
	return &http.Client{Transport: &http.Transport{
		Proxy:             http.ProxyURL(u),
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: serverName},
		DisableKeepAlives: true,
	}}
}

func poolOf(o *origin) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(o.Certificate())
	return pool
}

func get(c *http.Client, u string) (int, string, error) {
	resp, err := c.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestAllowedHTTPS: an allowed name over CONNECT reaches its server; the report
// logs it with bytes each way. Control: without the IP-literal entry that names
// the loopback address, the same name is refused (loopback is refused unless
// named).
func TestAllowedHTTPS(t *testing.T) {
	o := newOrigin(t, true)
	port := o.port()
	e := newProxy(t, Config{})
	e.resolve("example.com", "127.0.0.1")
	s, err := e.p.Session("l1", egressOf(t, []string{fmt.Sprintf("example.com:%d", port), fmt.Sprintf("127.0.0.1:%d", port)}), nil)
	if err != nil {
		t.Fatal(err)
	}
	code, body, err := get(client(s.ProxyURL(), poolOf(o), ""), fmt.Sprintf("https://example.com:%d/x", port))
	if err != nil || code != 200 || !strings.HasPrefix(body, "hello from example.com") {
		t.Fatalf("GET through the proxy: %d %q %v", code, body, err)
	}
	rep := s.Close()
	if len(rep.Allowed) != 1 || len(rep.Denied) != 0 {
		t.Fatalf("report = %+v", rep)
	}
	c := rep.Allowed[0]
	if c.Method != "CONNECT" || c.Host != "example.com" || c.Port != port || c.Addr != fmt.Sprintf("127.0.0.1:%d", port) || c.Rule != "tools.t.network.allow[0]" {
		t.Errorf("conn = %+v", c)
	}
	// The tool sent at least a ClientHello and a request; it received at least a
	// certificate and the body.
	if c.Sent < 200 || c.Received < int64(len(body))+500 || rep.Sent != c.Sent || rep.Received != c.Received {
		t.Errorf("bytes: sent %d received %d (report %d/%d)", c.Sent, c.Received, rep.Sent, rep.Received)
	}
	st := e.p.Stats()
	if st.Allowed != 1 || st.Sent != c.Sent || st.Received != c.Received || st.Sessions != 1 {
		t.Errorf("stats = %+v", st)
	}

	// Control: the name alone does not lift the loopback refusal.
	s2, _ := e.p.Session("l2", egressOf(t, []string{fmt.Sprintf("example.com:%d", port)}), nil)
	if _, _, err := get(client(s2.ProxyURL(), poolOf(o), ""), fmt.Sprintf("https://example.com:%d/x", port)); err == nil {
		t.Fatal("a name resolving to loopback was allowed without an IP-literal entry")
	}
	rep = s2.Close()
	if len(rep.Denied) != 1 || rep.Denied[0].Check != CheckAddress || rep.Denied[0].Allow != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Fatalf("report = %+v", rep)
	}
	if o.count() != 1 {
		t.Errorf("origin saw %d requests, want 1", o.count())
	}
}

// TestDeniedDestination: hosts, ports and addresses not on the list are refused
// with a structured denial naming the list and the entry that would allow them;
// nothing is resolved or dialled for them.
func TestDeniedDestination(t *testing.T) {
	o := newOrigin(t, true)
	e := newProxy(t, Config{})
	e.resolve("example.com", "127.0.0.1")
	e.resolve("other.test", "127.0.0.1")
	s, _ := e.p.Session("l1", egressOf(t, []string{"example.com"}), nil)
	c := client(s.ProxyURL(), poolOf(o), "")
	for _, u := range []string{
		"https://other.test/",                          // another host
		"https://example.com:8443/",                    // another port
		"https://api.example.com/",                     // a subdomain of an exact entry
		fmt.Sprintf("https://127.0.0.1:%d/", o.port()), // a raw IP
	} {
		if _, _, err := get(c, u); err == nil {
			t.Errorf("GET %s through the proxy succeeded", u)
		}
	}
	rep := s.Close()
	want := []struct{ host, allow string }{
		{"other.test", "other.test"}, {"example.com", "example.com:8443"}, {"api.example.com", "api.example.com"},
		{"127.0.0.1", fmt.Sprintf("127.0.0.1:%d", o.port())},
	}
	if len(rep.Denied) != len(want) {
		t.Fatalf("denials = %+v", rep.Denied)
	}
	for i, w := range want {
		d := rep.Denied[i]
		if d.Check != CheckDestination || d.Rule != "tools.t.network.allow" || d.Host != w.host || d.Allow != w.allow || d.Method != "CONNECT" {
			t.Errorf("denial %d = %+v, want host %s allow %s", i, d, w.host, w.allow)
		}
	}
	if got := rep.Denied[0].Error(); got != `rule tools.t.network.allow: CONNECT other.test:443: no allow entry matches (allow "other.test")` {
		t.Errorf("Error() = %s", got)
	}
	if n := len(e.net.addrs()); n != 0 || e.dns.count("other.test") != 0 || o.count() != 0 {
		t.Errorf("refused destinations were dialled (%d) or resolved (%d); origin hits %d", n, e.dns.count("other.test"), o.count())
	}
	if st := e.p.Stats(); st.Denied != 4 || st.Allowed != 0 {
		t.Errorf("stats = %+v", st)
	}
}

// TestRefusedAddresses: names that resolve to loopback, private, link-local
// (cloud metadata), CGNAT, ULA, multicast, unspecified or IPv4-mapped addresses
// are refused; the same address named literally is allowed (the control).
func TestRefusedAddresses(t *testing.T) {
	o := newOrigin(t, false)
	for _, ip := range []string{"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
		"fd00:ec2::254", "fe80::1", "::1", "0.0.0.0", "::", "224.0.0.1", "ff02::1", "::ffff:127.0.0.1", "::ffff:8.8.8.8", "64:ff9b::a00:1"} {
		t.Run(ip, func(t *testing.T) {
			e := newProxy(t, Config{})
			e.resolve("meta.test", ip)
			a := netip.MustParseAddr(ip)
			literal := netip.AddrPortFrom(a.Unmap(), 80).String()
			e.net.redirect[netip.AddrPortFrom(a, 80).String()] = o.Listener.Addr().String()
			s, _ := e.p.Session("l", egressOf(t, []string{"meta.test"}), nil)
			code, _, err := get(client(s.ProxyURL(), nil, ""), "http://meta.test/")
			if err != nil || code != http.StatusForbidden {
				t.Fatalf("GET: %d %v, want 403", code, err)
			}
			rep := s.Close()
			if len(rep.Denied) != 1 || rep.Denied[0].Check != CheckAddress || rep.Denied[0].Addr != a.String() || len(e.net.addrs()) != 0 {
				t.Fatalf("denials %+v, dialled %v", rep.Denied, e.net.addrs())
			}
			if a.Is4In6() {
				return // a mapped address is named by its IPv4 literal; covered above
			}
			// Control: an IP-literal entry for the address lifts the refusal.
			s2, _ := e.p.Session("l2", egressOf(t, []string{"meta.test", literal}), nil)
			code, body, err := get(client(s2.ProxyURL(), nil, ""), "http://meta.test/")
			if err != nil || code != 200 || !strings.HasPrefix(body, "hello") {
				t.Fatalf("with %s allowed: %d %q %v", literal, code, body, err)
			}
			if rep := s2.Close(); len(rep.Allowed) != 1 || rep.Allowed[0].Addr != netip.AddrPortFrom(a, 80).String() {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

// TestMetadataLiteral: CONNECT or GET to 169.254.169.254 itself is refused
// unless an entry names it; named, it is dialled (redirected to a loopback
// server by the test's dialer).
func TestMetadataLiteral(t *testing.T) {
	o := newOrigin(t, false)
	e := newProxy(t, Config{})
	e.net.redirect["169.254.169.254:80"] = o.Listener.Addr().String()
	s, _ := e.p.Session("l", egressOf(t, []string{"example.com"}), nil)
	if code, _, _ := get(client(s.ProxyURL(), nil, ""), "http://169.254.169.254/latest/meta-data/"); code != http.StatusForbidden {
		t.Fatalf("metadata GET: %d, want 403", code)
	}
	if rep := s.Close(); len(rep.Denied) != 1 || rep.Denied[0].Allow != "169.254.169.254:80" || len(e.net.addrs()) != 0 {
		t.Fatalf("report %+v", rep)
	}
	s2, _ := e.p.Session("l2", egressOf(t, []string{"169.254.169.254:80"}), nil)
	if code, _, err := get(client(s2.ProxyURL(), nil, ""), "http://169.254.169.254/latest/meta-data/"); code != 200 {
		t.Fatalf("named metadata GET: %d %v", code, err)
	}
	s2.Close()
}

// TestRebinding: the proxy resolves once per connection and dials the address
// it checked. The resolver answers public first and loopback afterwards: the
// first request goes to the public address (never to a name, never to the
// later answer), the second is refused.
func TestRebinding(t *testing.T) {
	o := newOrigin(t, false)
	e := newProxy(t, Config{})
	e.resolve("rebind.test", "203.0.113.7")
	e.resolve("rebind.test", "127.0.0.1")
	e.resolve("mixed.test", "203.0.113.7", "10.0.0.1")
	e.net.redirect["203.0.113.7:80"] = o.Listener.Addr().String()
	s, _ := e.p.Session("l", egressOf(t, []string{"rebind.test", "mixed.test"}), nil)
	c := client(s.ProxyURL(), nil, "")
	if code, _, err := get(c, "http://rebind.test/"); code != 200 {
		t.Fatalf("first GET: %d %v", code, err)
	}
	if code, _, _ := get(c, "http://rebind.test/"); code != http.StatusForbidden {
		t.Fatalf("second GET (rebound to loopback): %d, want 403", code)
	}
	// A public and a private answer at once: refused as a whole.
	if code, _, _ := get(c, "http://mixed.test/"); code != http.StatusForbidden {
		t.Fatalf("mixed answer: %d, want 403", code)
	}
	rep := s.Close()
	if got := e.net.addrs(); len(got) != 1 || got[0] != "203.0.113.7:80" {
		t.Errorf("dialled %v, want only 203.0.113.7:80", got)
	}
	if e.dns.count("rebind.test") != 2 {
		t.Errorf("rebind.test looked up %d times, want once per request", e.dns.count("rebind.test"))
	}
	if len(rep.Denied) != 2 || rep.Denied[0].Addr != "127.0.0.1" || rep.Denied[1].Addr != "10.0.0.1" {
		t.Errorf("denials %+v", rep.Denied)
	}
}

// TestCredentials: only the launch's own credential works; another launch's id
// with a wrong token, no credential, or a credential after Close get 407.
func TestCredentials(t *testing.T) {
	o := newOrigin(t, false)
	e := newProxy(t, Config{})
	e.resolve("a.test", "127.0.0.1")
	lit := fmt.Sprintf("127.0.0.1:%d", o.port())
	a, _ := e.p.Session("launch-a", egressOf(t, []string{fmt.Sprintf("a.test:%d", o.port()), lit}), nil)
	b, _ := e.p.Session("launch-b", egressOf(t, []string{"b.test"}), nil)
	target := fmt.Sprintf("http://a.test:%d/", o.port())
	if code, _, err := get(client(a.ProxyURL(), nil, ""), target); code != 200 {
		t.Fatalf("own credential (control): %d %v", code, err)
	}
	bu, _ := url.Parse(b.ProxyURL())
	btok, _ := bu.User.Password()
	forged := *bu
	forged.User = url.UserPassword("launch-a", btok) // b's token under a's id
	noAuth := *bu
	noAuth.User = nil
	for name, u := range map[string]string{"other launch's token": forged.String(), "none": noAuth.String()} {
		if code, _, err := get(client(u, nil, ""), target); code != http.StatusProxyAuthRequired {
			t.Errorf("%s: %d %v, want 407", name, code, err)
		}
	}
	// b's own credential reaches only b's list.
	if code, _, _ := get(client(b.ProxyURL(), nil, ""), target); code != http.StatusForbidden {
		t.Errorf("b to a's host: %d, want 403", code)
	}
	if _, err := e.p.Session("launch-a", egressOf(t, []string{"x.test"}), nil); err == nil {
		t.Error("a second session with an open launch id was accepted")
	}
	aURL := a.ProxyURL()
	a.Close()
	if code, _, _ := get(client(aURL, nil, ""), target); code != http.StatusProxyAuthRequired {
		t.Errorf("after Close: %d, want 407", code)
	}
	if st := e.p.Stats(); st.AuthFailures != 3 {
		t.Errorf("auth failures = %d, want 3", st.AuthFailures)
	}
	if o.count() != 1 {
		t.Errorf("origin hits = %d, want 1", o.count())
	}
	b.Close()
}

// TestSNIMismatch: a tunnel whose ClientHello names another server than the
// CONNECT host is cut before the ClientHello reaches the destination.
func TestSNIMismatch(t *testing.T) {
	o := newOrigin(t, true)
	e := newProxy(t, Config{})
	e.resolve("example.com", "127.0.0.1")
	s, _ := e.p.Session("l", egressOf(t, []string{fmt.Sprintf("example.com:%d", o.port()), fmt.Sprintf("127.0.0.1:%d", o.port())}), nil)
	u := fmt.Sprintf("https://example.com:%d/", o.port())
	if _, _, err := get(client(s.ProxyURL(), poolOf(o), "fronted.test"), u); err == nil {
		t.Fatal("a mismatched SNI went through")
	}
	// Control: the matching name works over the same session.
	if code, _, err := get(client(s.ProxyURL(), poolOf(o), "example.com"), u); code != 200 {
		t.Fatalf("matching SNI: %d %v", code, err)
	}
	rep := s.Close()
	if len(rep.Denied) != 1 || rep.Denied[0].Check != CheckSNI || !strings.Contains(rep.Denied[0].Reason, `"fronted.test"`) {
		t.Fatalf("denials %+v", rep.Denied)
	}
	if o.count() != 1 {
		t.Errorf("origin hits %d, want 1", o.count())
	}
}

// TestSSHThroughConnect: an ssh entry opens a CONNECT tunnel (server speaks
// first, as sshd does) through ConnectHelper; the same host:port is refused over
// plain HTTP and to a launch without the ssh entry.
func TestSSHThroughConnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, "SSH-2.0-test\r\n")
				io.Copy(c, c)
			}()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	e := newProxy(t, Config{SSHProxyCommand: "/x/agentexec __egress_connect %h %p"})
	e.resolve("git.test", "127.0.0.1")
	s, _ := e.p.Session("l", egressOf(t, []string{fmt.Sprintf("127.0.0.1:%d", port)}, fmt.Sprintf("git.test:%d", port)), nil)
	pr, pw := io.Pipe()
	out := &syncBuf{}
	done := make(chan error, 1)
	go func() { done <- ConnectHelper(s.ProxyURL(), "git.test", strconv.Itoa(port), pr, out) }()
	io.WriteString(pw, "ping\n")
	pw.Close()
	if err := <-done; err != nil {
		t.Fatalf("ConnectHelper: %v", err)
	}
	if got := out.String(); got != "SSH-2.0-test\r\nping\n" {
		t.Errorf("through the tunnel: %q", got)
	}
	var gitSSH string
	for _, kv := range s.Env() {
		if v, ok := strings.CutPrefix(kv, "GIT_SSH_COMMAND="); ok {
			gitSSH = v
		}
	}
	if !strings.Contains(gitSSH, `-o 'ProxyCommand=/x/agentexec __egress_connect %h %p'`) || !strings.Contains(gitSSH, "StrictHostKeyChecking=yes") {
		t.Errorf("GIT_SSH_COMMAND = %q", gitSSH)
	}
	// Controls: plain HTTP to the ssh entry, and a launch without it.
	if code, _, _ := get(client(s.ProxyURL(), nil, ""), fmt.Sprintf("http://git.test:%d/", port)); code != http.StatusForbidden {
		t.Errorf("plain HTTP to an ssh entry: %d, want 403", code)
	}
	s2, _ := e.p.Session("l2", egressOf(t, []string{"git.test"}), nil)
	if err := ConnectHelper(s2.ProxyURL(), "git.test", "22", strings.NewReader(""), io.Discard); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("ssh without an ssh entry: %v", err)
	}
	if rep := s2.Close(); len(rep.Denied) != 1 || !strings.Contains(rep.Denied[0].Reason, "network.ssh") || rep.Denied[0].Allow != "git.test (in network.ssh)" {
		t.Errorf("denials %+v", rep.Denied)
	}
	rep := s.Close()
	if len(rep.Allowed) != 1 || rep.Allowed[0].Sent != 5 || rep.Allowed[0].Received != int64(len("SSH-2.0-test\r\nping\n")) {
		t.Errorf("report %+v", rep)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// secretsFixture is a proxy with one secret, gh (sec: value real, as GH_TOKEN), for
// example.com on api's port, api's certificate trusted upstream and other's as the
// system roots; and a session allowed example.com and both origins by address.
// api serves example.com (httptest's certificate name); other is another allowed
// destination, by IP literal.
func secretsFixture(t *testing.T, real string) (e *env, s *Session, sec *Secret, api, other *origin) {
	t.Helper()
	api, other = newOrigin(t, true), newOrigin(t, true)
	dir := t.TempDir()
	sysRoots := filepath.Join(dir, "system.pem")
	if err := os.WriteFile(sysRoots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	host, _ := policy.ParseAllow("secrets.gh.hosts[0]", fmt.Sprintf("example.com:%d", api.port()), nil)
	sec = &Secret{Name: "gh", Env: "GH_TOKEN", Value: real, Hosts: host}
	e = newProxy(t, Config{Secrets: []*Secret{sec}, CADir: dir, SystemRoots: sysRoots, UpstreamRoots: poolOf(api)})
	e.resolve("example.com", "127.0.0.1")
	s, err := e.p.Session("l", egressOf(t, []string{fmt.Sprintf("example.com:%d", api.port()), fmt.Sprintf("127.0.0.1:%d", api.port()),
		fmt.Sprintf("127.0.0.1:%d", other.port())}), []string{"gh"})
	if err != nil {
		t.Fatal(err)
	}
	return e, s, sec, api, other
}

// TestSecrets: the launch sees a placeholder; the secret's host receives the
// real value (Bearer and Basic); a tunnelled destination receives only the
// placeholder; the CA cannot vouch for other names (name constraints); the
// bundle holds the system roots and the CA, never a key.
func TestSecrets(t *testing.T) {
	const real = "real-token-0123"
	e, s, _, api, other := secretsFixture(t, real)
	sysPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Certificate().Raw})
	envs := s.Env()
	var placeholder, bundle string
	for _, kv := range envs {
		if strings.Contains(kv, real) {
			t.Fatalf("the environment holds the real secret: %s", kv)
		}
		if v, ok := strings.CutPrefix(kv, "GH_TOKEN="); ok {
			placeholder = v
		}
		if v, ok := strings.CutPrefix(kv, "SSL_CERT_FILE="); ok {
			bundle = v
		}
	}
	if placeholder == "" || bundle == "" {
		t.Fatalf("env lacks GH_TOKEN or SSL_CERT_FILE: %q", envs)
	}
	data, err := os.ReadFile(bundle)
	if err != nil || !strings.HasPrefix(string(data), string(sysPEM)) || strings.Contains(string(data), "PRIVATE KEY") {
		t.Fatalf("bundle: %v (starts with the system roots: %v)", err, strings.HasPrefix(string(data), string(sysPEM)))
	}
	// What a tool does with SSL_CERT_FILE: trust the bundle.
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(data)
	c := client(s.ProxyURL(), roots, "")
	req, _ := http.NewRequest("GET", fmt.Sprintf("https://example.com:%d/", api.port()), nil)
	req.Header.Set("Authorization", "Bearer "+placeholder)
	if resp, err := c.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("intercepted request: %v", err)
	} else {
		resp.Body.Close()
	}
	req, _ = http.NewRequest("GET", fmt.Sprintf("https://example.com:%d/", api.port()), nil)
	req.SetBasicAuth("x-access-token", placeholder)
	if resp, err := c.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("intercepted request (basic): %v", err)
	} else {
		resp.Body.Close()
	}
	// The tunnelled destination: its own certificate is in the bundle's system
	// part, so the bundle must keep the system roots for this to work.
	req, _ = http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/", other.port()), nil)
	req.Header.Set("Authorization", "Bearer "+placeholder)
	if resp, err := c.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("tunnelled request: %v", err)
	} else {
		resp.Body.Close()
	}
	// Fronting inside an intercepted tunnel: another Host header is refused.
	req, _ = http.NewRequest("GET", fmt.Sprintf("https://example.com:%d/", api.port()), nil)
	req.Host = "evil.test"
	if resp, err := c.Do(req); err == nil {
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("Host fronting: %d, want 403", resp.StatusCode)
		}
		resp.Body.Close()
	}
	rep := s.Close()
	basic := "Basic " + base64Std("x-access-token:"+real)
	if api.auths[0] != "Bearer "+real || api.auths[1] != basic || len(api.auths) != 2 {
		t.Errorf("the secret's host received %q", api.auths)
	}
	if len(other.auths) != 1 || other.auths[0] != "Bearer "+placeholder {
		t.Errorf("the other host received %q, want only the placeholder", other.auths)
	}
	// Connections are reported as they end, in no fixed order: three intercepted
	// ones to the secret's host, one plain tunnel to the other.
	var intercepted, plain []string
	for _, c := range rep.Allowed {
		if c.Intercepted {
			intercepted = append(intercepted, c.Host)
		} else {
			plain = append(plain, c.Host)
		}
	}
	if len(intercepted) != 3 || len(plain) != 1 || plain[0] != "127.0.0.1" {
		t.Errorf("report %+v: intercepted %q, plain %q", rep, intercepted, plain)
	}
	if len(rep.Denied) != 1 || rep.Denied[0].Check != CheckHost {
		t.Errorf("denials %+v", rep.Denied)
	}
	// The CA's name constraints: a certificate it issues for another name does
	// not verify.
	leaf, err := e.p.ca.leaf("evil.test")
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(leaf.Certificate[0])
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "evil.test"}); err == nil {
		t.Error("the CA vouched for a name outside its constraints")
	} else if !errors.As(err, new(x509.CertificateInvalidError)) {
		t.Errorf("verify: %v", err)
	}
	// Control: for the secret's host it does.
	good, _ := e.p.ca.leaf("example.com")
	gc, _ := x509.ParseCertificate(good.Certificate[0])
	if _, err := gc.Verify(x509.VerifyOptions{Roots: roots, DNSName: "example.com"}); err != nil {
		t.Errorf("verify example.com: %v", err)
	}
}

func base64Std(s string) string {
	r, _ := http.NewRequest("GET", "http://x/", nil)
	u, p, _ := strings.Cut(s, ":")
	r.SetBasicAuth(u, p)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// TestEnv: the proxy variables in both cases, an empty NO_PROXY, the credential
// in the URL, no CA variables without secrets.
func TestEnv(t *testing.T) {
	e := newProxy(t, Config{})
	s, _ := e.p.Session("l", egressOf(t, []string{"x.test"}), nil)
	defer s.Close()
	got := map[string]string{}
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	for _, k := range []string{"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "npm_config_proxy", "npm_config_https_proxy"} {
		if got[k] != s.ProxyURL() {
			t.Errorf("%s = %q, want %q", k, got[k], s.ProxyURL())
		}
	}
	if v, ok := got["NO_PROXY"]; !ok || v != "" {
		t.Errorf("NO_PROXY = %q, %v", v, ok)
	}
	for _, k := range CAVars {
		if _, ok := got[k]; ok {
			t.Errorf("%s set without secrets", k)
		}
	}
	if _, ok := got["GIT_SSH_COMMAND"]; ok {
		t.Error("GIT_SSH_COMMAND set without ssh hosts")
	}
	u, _ := url.Parse(s.ProxyURL())
	if u.User.Username() != "l" || u.Port() != strconv.Itoa(e.p.Port()) || u.Hostname() != "127.0.0.1" {
		t.Errorf("proxy URL %s", u.Redacted())
	}
	if _, err := e.p.Session("bad:id", egressOf(t, []string{"x.test"}), nil); err == nil {
		t.Error("a launch id with ':' was accepted")
	}
	if _, err := e.p.Session("l3", nil, nil); err == nil {
		t.Error("a session without rules was accepted")
	}
}
