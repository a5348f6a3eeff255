package egress

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/agentexec/agentexec/policy"
)

// Secret is a credential that never enters the sandbox: a launch's environment
// holds a placeholder in Env, and the proxy puts Value in its place in the
// request headers of HTTPS requests to Hosts (Authorization: Bearer …, custom
// headers, and the password of Basic credentials). Only those hosts' tunnels
// are intercepted (TLS terminated with the proxy's CA); every other destination
// is tunnelled untouched.
type Secret struct {
	// Name identifies the secret in Proxy.Session.
	Name string
	// Env is the variable that holds the placeholder in the launch's
	// environment ("" for none).
	Env string
	// Value is the real credential, read by the runtime from its own
	// environment or a file; it is sent only to Hosts, only over TLS.
	Value string
	// Hosts are where Value may go: name entries (exact or wildcard) with ports.
	Hosts []policy.Allow

	placeholder string
}

// Placeholder is the text a launch sees instead of Value (set by New).
func (s *Secret) Placeholder() string { return s.placeholder }

// authority is the proxy's CA: generated at New, its key only in memory, name
// constrained to the secrets' hosts, so that it cannot vouch for any other name
// even if a tool wanted it to.
type authority struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	bundle string // path of system roots + CA certificate
	roots  *x509.CertPool

	mu     sync.Mutex
	leaves map[string]*tls.Certificate
}

func newAuthority(cfg Config) (*authority, error) {
	if cfg.CADir == "" {
		return nil, errors.New("egress: secrets need Config.CADir (the runtime's private directory) for the CA bundle")
	}
	var permitted []string
	for _, s := range cfg.Secrets {
		if s.Name == "" || s.Value == "" || len(s.Hosts) == 0 {
			return nil, fmt.Errorf("egress: secret %q needs a name, a value and hosts", s.Name)
		}
		if strings.ContainsAny(s.Value, "\r\n\x00") {
			return nil, fmt.Errorf("egress: secret %q: the value holds a line break or NUL", s.Name)
		}
		for _, h := range s.Hosts {
			switch {
			case h.IP.IsValid():
				return nil, fmt.Errorf("egress: secret %q: host %s is an address; secrets go to names only", s.Name, h.Text)
			case h.Wildcard:
				permitted = append(permitted, "."+h.Host)
			default:
				permitted = append(permitted, h.Host)
			}
		}
		var b [12]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		s.placeholder = "agentexec-secret-" + s.Name + "-" + hex.EncodeToString(b[:])
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("egress: CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:                serial(),
		Subject:                     pkix.Name{CommonName: "agentexec egress CA (this runtime only)"},
		NotBefore:                   now.Add(-time.Hour),
		NotAfter:                    now.Add(30 * 24 * time.Hour),
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid:       true,
		IsCA:                        true,
		MaxPathLenZero:              true,
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         permitted,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("egress: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	sys := cfg.SystemRoots
	if sys == "" {
		sys = "/etc/ssl/certs/ca-certificates.crt"
	}
	sysPEM, err := os.ReadFile(sys)
	if err != nil {
		return nil, fmt.Errorf("egress: system CA bundle (tools must keep trusting every other host): %w", err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	bundle := filepath.Join(cfg.CADir, "egress-ca-bundle.pem")
	data := append(append(append([]byte{}, sysPEM...), '\n'), caPEM...)
	if err := os.WriteFile(bundle, data, 0o644); err != nil {
		return nil, fmt.Errorf("egress: CA bundle: %w", err)
	}
	return &authority{cert: cert, key: key, bundle: bundle, roots: cfg.UpstreamRoots, leaves: map[string]*tls.Certificate{}}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// leaf returns a certificate for host signed by the CA (cached).
func (a *authority) leaf(host string) (*tls.Certificate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.leaves[host]; c != nil {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     a.cert.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der, a.cert.Raw}, PrivateKey: key}
	a.leaves[host] = c
	return c, nil
}

// intercept terminates the tool's TLS with a certificate for t.host, opens TLS
// to the checked address (verified as t.host), and relays HTTP/1.1 requests one
// at a time, putting the secrets' values in place of their placeholders. It
// returns what ended the connection abnormally ("" if nothing).
func (p *Proxy) intercept(s *Session, client net.Conn, cr *bufio.Reader, up *countConn, t *target, secrets []*Secret) string {
	cert, err := p.ca.leaf(t.host)
	if err != nil {
		return "certificate: " + err.Error()
	}
	tc := tls.Server(&bufConn{Conn: client, r: cr}, &tls.Config{
		Certificates: []tls.Certificate{*cert},
		NextProtos:   []string{"http/1.1"},
		MinVersion:   tls.VersionTLS12,
	})
	defer tc.Close()
	if err := tc.Handshake(); err != nil {
		return "TLS from the tool: " + err.Error()
	}
	uc := tls.Client(up, &tls.Config{ServerName: t.host, RootCAs: p.ca.roots, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12})
	defer uc.Close()
	if err := uc.Handshake(); err != nil {
		return "TLS to " + t.host + ": " + err.Error()
	}
	tr, ur := bufio.NewReader(tc), bufio.NewReader(uc)
	for {
		req, err := http.ReadRequest(tr)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return ""
			}
			return "request: " + err.Error()
		}
		if h, _, err := splitPort(req.Host, t.port); err != nil || !strings.EqualFold(strings.TrimSuffix(h, "."), t.host) {
			d := &Denial{Time: time.Now(), Rule: "egress", Check: CheckHost, Method: req.Method, Host: t.host, Port: t.port,
				Reason: fmt.Sprintf("Host header %q differs from the CONNECT host (domain fronting)", req.Host)}
			s.deny(d)
			resp := &http.Response{StatusCode: http.StatusForbidden, ProtoMajor: 1, ProtoMinor: 1, Close: true,
				Header: http.Header{"X-Agentexec-Denial": {d.Check}}, Body: io.NopCloser(strings.NewReader(d.Error())), ContentLength: int64(len(d.Error()))}
			_ = resp.Write(tc)
			return "refused: " + d.Reason
		}
		substitute(req.Header, secrets)
		if err := req.Write(uc); err != nil {
			return "write request: " + err.Error()
		}
		resp, err := http.ReadResponse(ur, req)
		for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			if werr := resp.Write(tc); werr != nil {
				return "write response: " + werr.Error()
			}
			resp, err = http.ReadResponse(ur, req)
		}
		if err != nil {
			return "read response: " + err.Error()
		}
		werr := resp.Write(tc)
		resp.Body.Close()
		if werr != nil {
			return "write response: " + werr.Error()
		}
		if resp.Close || req.Close || resp.StatusCode == http.StatusSwitchingProtocols {
			return ""
		}
	}
}

// substitute puts each secret's value in place of its placeholder in h,
// including inside Basic credentials (git sends a token as a password).
func substitute(h http.Header, secrets []*Secret) {
	for k, vs := range h {
		for i, v := range vs {
			for _, s := range secrets {
				v = strings.ReplaceAll(v, s.placeholder, s.Value)
				if enc, ok := strings.CutPrefix(v, "Basic "); ok {
					if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc)); err == nil && strings.Contains(string(raw), s.placeholder) {
						v = "Basic " + base64.StdEncoding.EncodeToString([]byte(strings.ReplaceAll(string(raw), s.placeholder, s.Value)))
					}
				}
			}
			vs[i] = v
		}
		h[k] = vs
	}
}

// bufConn reads through the bufio.Reader the HTTP server had buffered into.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(b []byte) (int, error) { return c.r.Read(b) }
