package egress

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentexec/agentexec/policy"
)

// Session is one launch's use of the proxy: its credential, its allow lists and
// its report. Close it when the launch has finished.
type Session struct {
	p       *Proxy
	id      string
	token   string
	egress  *policy.Egress
	secrets []*Secret

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
	conns  map[net.Conn]struct{}
	rep    Report
	// agent is the launch's filtering ssh-agent (sshagent.go), nil without.
	agent *sshAgent
}

var launchIDRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`) })

// ErrClosed is returned by Session after Close.
var ErrClosed = errors.New("egress: proxy closed")

// Session registers a launch: requests that carry its credential (in the proxy
// URL of Env) are checked against e. launch must be unique among open sessions
// (letters, digits, '.', '_' and '-'); secrets names the Config.Secrets the
// launch may have substituted (unknown names are an error).
func (p *Proxy) Session(launch string, e *policy.Egress, secrets []string) (*Session, error) {
	if !launchIDRE().MatchString(launch) {
		return nil, fmt.Errorf("egress: launch id %q: want 1 to 128 letters, digits, '.', '_' or '-'", launch)
	}
	if e == nil {
		return nil, fmt.Errorf("egress: launch %s: no egress rules (a tool without network.allow or network.ssh gets no proxy)", launch)
	}
	s := &Session{p: p, id: launch, egress: e, conns: map[net.Conn]struct{}{}, rep: Report{Launch: launch}}
	for _, name := range secrets {
		i := slices.IndexFunc(p.cfg.Secrets, func(x *Secret) bool { return x.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("egress: launch %s: unknown secret %q", launch, name)
		}
		s.secrets = append(s.secrets, p.cfg.Secrets[i])
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("egress: credential for launch %s: %w", launch, err)
	}
	s.token = hex.EncodeToString(b[:])
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	if _, dup := p.sessions[launch]; dup {
		return nil, fmt.Errorf("egress: launch id %q is already in use", launch)
	}
	p.sessions[launch] = s
	p.stats.sessions.Add(1)
	return s, nil
}

// ID is the launch id the session was opened with.
func (s *Session) ID() string { return s.id }

// ProxyURL is the proxy URL with this launch's credential,
// "http://ID:TOKEN@127.0.0.1:PORT". It is a secret of the launch: give it only
// to the launch's environment.
func (s *Session) ProxyURL() string {
	u := url.URL{Scheme: "http", User: url.UserPassword(s.id, s.token), Host: s.p.ln.Addr().String()}
	return u.String()
}

// Port is the proxy's TCP port (Proxy.Port).
func (s *Session) Port() int { return s.p.Port() }

// Env is what the launch's environment gets (docs/network.md, "What a tool
// sees"): the proxy variables in upper and lower case, NO_PROXY empty, npm's
// proxy settings, GIT_SSH_COMMAND for network.ssh hosts (when the proxy has an
// SSHProxyCommand), and for launches with secrets their placeholders and the CA
// bundle variables. Later entries of the same name in a launch's env win in
// most libcs' getenv; the runtime should put these after the policy's values.
func (s *Session) Env() []string {
	u := s.ProxyURL()
	env := []string{
		"HTTP_PROXY=" + u, "http_proxy=" + u,
		"HTTPS_PROXY=" + u, "https_proxy=" + u,
		"ALL_PROXY=" + u, "all_proxy=" + u,
		"NO_PROXY=", "no_proxy=",
		"npm_config_proxy=" + u, "npm_config_https_proxy=" + u,
	}
	if len(s.egress.SSH) > 0 && s.p.cfg.SSHProxyCommand != "" {
		env = append(env, s.sshEnv()...) // ssh.go
	}
	if len(s.secrets) > 0 && s.p.ca != nil {
		for _, sec := range s.secrets {
			if sec.Env != "" {
				env = append(env, sec.Env+"="+sec.placeholder)
			}
		}
		for _, v := range CAVars {
			env = append(env, v+"="+s.p.ca.bundle)
		}
	}
	return env
}

// CAVars are the variables that point tools at the CA bundle of a launch with
// secrets (system roots plus the proxy's CA, never the CA alone): the policy's
// list, which also keeps tools with secrets from setting them.
var CAVars = policy.SecretTrustVars

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Close revokes the launch's credential, closes its open connections, waits
// for its requests to finish and returns its report. Later calls return the
// same report.
func (s *Session) Close() Report {
	s.p.mu.Lock()
	if s.p.sessions[s.id] == s {
		delete(s.p.sessions, s.id)
	}
	s.p.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	a := s.agent
	s.mu.Unlock()
	if a != nil {
		a.close()
	}
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rep
	r.Allowed = slices.Clone(r.Allowed)
	r.Denied = slices.Clone(r.Denied)
	return r
}

// begin counts a request in; false once the session is closed.
func (s *Session) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

func (s *Session) end() { s.wg.Done() }

// track registers a connection that Close must close; false (and c closed by
// the caller) when the session is already closed.
func (s *Session) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Session) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Session) deny(d *Denial) {
	s.p.stats.denied.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rep.Denied) >= MaxReportEntries {
		s.rep.DroppedDenied++
		return
	}
	s.rep.Denied = append(s.rep.Denied, *d)
}

func (s *Session) allow(c Conn, start time.Time) {
	c.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	s.p.stats.allowed.Add(1)
	s.p.stats.sent.Add(c.Sent)
	s.p.stats.received.Add(c.Received)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.Sent += c.Sent
	s.rep.Received += c.Received
	if len(s.rep.Allowed) >= MaxReportEntries {
		s.rep.DroppedAllowed++
		return
	}
	s.rep.Allowed = append(s.rep.Allowed, c)
}

// secretsFor returns the launch's secrets bound to host:port.
func (s *Session) secretsFor(host string, port uint16) []*Secret {
	var out []*Secret
	for _, sec := range s.secrets {
		for _, a := range sec.Hosts {
			if a.MatchesName(host, port) {
				out = append(out, sec)
				break
			}
		}
	}
	return out
}
