package agentexec_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/egress"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// testCA is a certificate authority of the test's own and a server certificate
// it signed for names, so that HTTPS origins on loopback answer for api.test and
// other.test.
type testCA struct {
	pem  []byte
	pool *x509.CertPool
	leaf tls.Certificate
}

func newTestCA(t *testing.T, names ...string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "agentexec test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	lkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	lTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	lDER, err := x509.CreateCertificate(rand.Reader, lTmpl, ca, &lkey.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCA{pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), pool: x509.NewCertPool(),
		leaf: tls.Certificate{Certificate: [][]byte{lDER}, PrivateKey: lkey}}
	c.pool.AddCert(ca)
	return c
}

// seen is one request an origin received.
type seen struct{ host, auth, key string }

// headerOrigin is an HTTPS origin on loopback that records the credentials
// each request carries.
type headerOrigin struct {
	srv  *httptest.Server
	port string
	mu   sync.Mutex
	reqs []seen
}

func newHeaderOrigin(t *testing.T, ca *testCA) *headerOrigin {
	o := &headerOrigin{}
	o.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.reqs = append(o.reqs, seen{host: r.Host, auth: r.Header.Get("Authorization"), key: r.Header.Get("X-Api-Key")})
		o.mu.Unlock()
		fmt.Fprint(w, "origin ok")
	}))
	o.srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.leaf}}
	o.srv.StartTLS()
	t.Cleanup(o.srv.Close)
	_, o.port, _ = net.SplitHostPort(o.srv.Listener.Addr().String())
	return o
}

// take returns the requests received since the last call.
func (o *headerOrigin) take() []seen {
	o.mu.Lock()
	defer o.mu.Unlock()
	r := o.reqs
	o.reqs = nil
	return r
}

// secretHostsMap is the proxy's resolver in tests: every name it knows is loopback.
type secretHostsMap map[string]string

func (h secretHostsMap) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := h[host]; ok {
		return []netip.Addr{netip.MustParseAddr(a)}, nil
	}
	return nil, &net.DNSError{Err: "no such host (test resolver)", Name: host, IsNotFound: true}
}

// secretsSetup is a runtime whose policy gives the tool "gh" two secrets (one
// from the environment, one from a file) bound to api.test, and the tool
// "nosecret" the same allow list without secrets; other.test is allowed to both
// and is no secret's host. Both names resolve (in the proxy only) to one local
// HTTPS origin.
type secretsSetup struct {
	rt              *agentexec.Runtime
	origin          *headerOrigin
	ws, caFile      string
	ghValue, keyVal string
}

func newSecretsSetup(t *testing.T) *secretsSetup {
	testutil.RequireLandlockABI(t, 4)
	testutil.RequireCommand(t, "curl")
	ca := newTestCA(t, "api.test", "other.test")
	o := newHeaderOrigin(t, ca)
	dir := t.TempDir()
	// The system bundle the runtime's bundle starts with: the host's, plus the
	// test CA, as if other.test had a publicly trusted certificate.
	sys, _ := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	sysFile := filepath.Join(dir, "system.pem")
	if err := os.WriteFile(sysFile, append(append(sys, '\n'), ca.pem...), 0o644); err != nil {
		t.Fatal(err)
	}
	var b [12]byte
	rand.Read(b[:])
	s := &secretsSetup{origin: o, ghValue: "ghs_real_" + hex.EncodeToString(b[:6]), keyVal: "key_real_" + hex.EncodeToString(b[6:])}
	t.Setenv("AGENTEXEC_TEST_GH_TOKEN", s.ghValue)
	keyFile := filepath.Join(dir, "api-key")
	if err := os.WriteFile(keyFile, []byte(s.keyVal+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	top := fmt.Sprintf(`secrets:
  gh:
    env: AGENTEXEC_TEST_GH_TOKEN
    hosts: ["api.test:%[1]s"]
    as: GH_TOKEN
  key:
    file: %[2]s
    hosts: ["api.test:%[1]s"]
    as: API_KEY
`, o.port, keyFile)
	tools := fmt.Sprintf(`  gh:
    exec: /bin/sh
    filesystem: {read+: [/dev/urandom]}
    network:
      allow: ["api.test:%[1]s", "other.test:%[1]s", "127.0.0.1:%[1]s"]
      secrets: [gh, key]
  nosecret:
    exec: /bin/sh
    filesystem: {read+: [/dev/urandom]}
    network:
      allow: ["api.test:%[1]s", "other.test:%[1]s", "127.0.0.1:%[1]s"]
`, o.port)
	p, ws := testPolicyFull(t, top, tools, "require")
	s.ws = ws
	s.caFile = filepath.Join(ws, "test-ca.pem")
	if err := os.WriteFile(s.caFile, ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	s.rt = newRuntime(t, p, agentexec.WithEgressConfigForTest(func(c *egress.Config) {
		c.Resolver = secretHostsMap{"api.test": "127.0.0.1", "other.test": "127.0.0.1"}
		c.UpstreamRoots = ca.pool
		c.SystemRoots = sysFile
	}))
	return s
}

// curlCmd is a shell command line: curl through the launch's proxy, sending
// the given Authorization and X-Api-Key values (shell words) to url.
func curlCmd(url, auth, key, extra string) string {
	return fmt.Sprintf(`curl -sS --max-time 20 %s -H "Authorization: Bearer %s" -H "X-Api-Key: %s" %s`, extra, auth, key, url)
}

// The test: the tool's environment holds only placeholders; the origin
// that is the secrets' host receives the real values in place of the
// placeholders the tool sent (Authorization and a custom header); another
// allowed destination receives the placeholders only; and the control: the same
// placeholders sent by a tool without the secrets reach the secrets' host
// untouched, so the substitution is the secret configuration's doing.
func TestEgressSecrets(t *testing.T) {
	s := newSecretsSetup(t)
	var results []agentexec.Result
	runSh := func(tool, script string) agentexec.Result {
		t.Helper()
		r := run(t, s.rt, tool, "-c", script)
		results = append(results, r)
		return r
	}

	// The environment: placeholders and the trust variables, not the values.
	r := runSh("gh", "env")
	env := map[string]string{}
	for _, l := range strings.Split(string(r.Stdout), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			env[k] = v
		}
	}
	ghPH, keyPH := env["GH_TOKEN"], env["API_KEY"]
	if !strings.HasPrefix(ghPH, "agentexec-secret-gh-") || !strings.HasPrefix(keyPH, "agentexec-secret-key-") {
		t.Fatalf("gh's environment lacks the placeholders: GH_TOKEN=%q API_KEY=%q", ghPH, keyPH)
	}
	bundle := env["SSL_CERT_FILE"]
	for _, v := range policy.SecretTrustVars {
		if env[v] == "" || env[v] != bundle {
			t.Errorf("%s=%q, want the CA bundle %q", v, env[v], bundle)
		}
	}
	if _, ok := env["AGENTEXEC_TEST_GH_TOKEN"]; ok {
		t.Error("the secret's source variable reached the tool")
	}

	// To the secrets' host: the origin receives the values.
	url := "https://api.test:" + s.origin.port + "/api"
	r = runSh("gh", curlCmd(url, "$GH_TOKEN", "$API_KEY", ""))
	if r.ExitCode != 0 || string(r.Stdout) != "origin ok" {
		t.Fatalf("curl to the secrets' host: exit %d stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	if got := s.origin.take(); len(got) != 1 || got[0].auth != "Bearer "+s.ghValue || got[0].key != s.keyVal {
		t.Errorf("the secrets' host received %d requests, want 1 with the real credentials (got placeholders: %v)",
			len(got), len(got) == 1 && strings.Contains(got[0].auth+got[0].key, "agentexec-secret-"))
	}
	if r.Egress == nil || len(r.Egress.Allowed) != 1 || !r.Egress.Allowed[0].Intercepted {
		t.Errorf("egress report %+v: want one intercepted connection", r.Egress)
	}

	// To another allowed destination, not the secrets' host: placeholders only.
	r = runSh("gh", curlCmd("https://other.test:"+s.origin.port+"/other", "$GH_TOKEN", "$API_KEY", ""))
	if r.ExitCode != 0 {
		t.Fatalf("curl to another allowed host: exit %d stderr %q", r.ExitCode, r.Stderr)
	}
	if got := s.origin.take(); len(got) != 1 || got[0].auth != "Bearer "+ghPH || got[0].key != keyPH || !strings.HasPrefix(got[0].host, "other.test") {
		t.Errorf("the other host received %+v, want one request with the placeholders only", got)
	}
	if r.Egress == nil || len(r.Egress.Allowed) != 1 || r.Egress.Allowed[0].Intercepted {
		t.Errorf("egress report %+v: want one tunnelled connection", r.Egress)
	}

	// Control: the same placeholders from a tool without the secrets go through
	// untouched (tunnelled; it trusts the origin's CA directly).
	r = runSh("nosecret", curlCmd(url, ghPH, keyPH, "--cacert "+s.caFile))
	if r.ExitCode != 0 {
		t.Fatalf("control: exit %d stderr %q", r.ExitCode, r.Stderr)
	}
	if got := s.origin.take(); len(got) != 1 || got[0].auth != "Bearer "+ghPH || got[0].key != keyPH {
		t.Errorf("control: the secrets' host received %+v from a tool without secrets, want the placeholders", got)
	}
	if r.Egress == nil || len(r.Egress.Allowed) != 1 || r.Egress.Allowed[0].Intercepted {
		t.Errorf("control: egress report %+v: want one tunnelled connection", r.Egress)
	}
	r = runSh("nosecret", "env")
	if strings.Contains(string(r.Stdout), "GH_TOKEN=") || strings.Contains(string(r.Stdout), "SSL_CERT_FILE=") {
		t.Errorf("a tool without secrets got placeholders or trust variables:\n%s", r.Stdout)
	}

	// The values appear in no result (output, egress report, denials).
	for i, r := range results {
		b, _ := json.Marshal(r)
		if bytes.Contains(b, []byte(s.ghValue)) || bytes.Contains(b, []byte(s.keyVal)) {
			t.Errorf("result %d holds a secret's value", i)
		}
	}
	// Nor does check's report.
	var text bytes.Buffer
	rep := agentexec.Check(s.rt.Policy())
	rep.WriteText(&text)
	js, _ := json.Marshal(rep)
	if bytes.Contains(js, []byte(s.ghValue)) || bytes.Contains(text.Bytes(), []byte(s.ghValue)) ||
		bytes.Contains(js, []byte(s.keyVal)) || bytes.Contains(text.Bytes(), []byte(s.keyVal)) {
		t.Error("check's report holds a secret's value")
	}
	if len(rep.Egress.Secrets) != 2 || rep.Egress.Secrets[0].Name != "gh" || rep.Egress.Secrets[0].Source != "env" ||
		rep.Egress.Secrets[0].As != "GH_TOKEN" || !rep.Egress.Secrets[0].Readable || rep.Egress.Secrets[1].Source != "file" ||
		fmt.Sprint(rep.Egress.Secrets[1].Tools) != "[gh]" || rep.Egress.Secrets[1].Hosts[0] != "api.test:"+s.origin.port {
		t.Errorf("check's secrets: %+v", rep.Egress.Secrets)
	}
	if !strings.Contains(text.String(), "egress secret gh: from env AGENTEXEC_TEST_GH_TOKEN, tools see GH_TOKEN") {
		t.Errorf("check's text lacks the secret:\n%s", text.String())
	}
}

// The CA bundle: readable by the tools given secrets (the runtime's tool
// identity when it is root) through their read rules, not writable by them,
// outside every other profile's rules, and gone after Close.
func TestEgressSecretsBundle(t *testing.T) {
	s := newSecretsSetup(t)
	r := run(t, s.rt, "gh", "-c", `echo "$SSL_CERT_FILE"; id -u`)
	lines := strings.Fields(string(r.Stdout))
	if len(lines) != 2 {
		t.Fatalf("gh: %q %q", r.Stdout, r.Stderr)
	}
	bundle, uid := lines[0], lines[1]
	if os.Geteuid() == 0 && uid == "0" {
		t.Errorf("the tool runs as uid 0 under a root runtime")
	}
	st, err := os.Stat(bundle)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.Stat(filepath.Dir(bundle))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 || dst.Mode().Perm() != 0o711 {
		t.Errorf("bundle mode %v, its directory %v; want 0644 and 0711", st.Mode(), dst.Mode())
	}
	before, _ := os.ReadFile(bundle)
	if !bytes.Contains(before, []byte("agentexec test CA")) && !bytes.Contains(before, []byte("BEGIN CERTIFICATE")) {
		t.Fatalf("the bundle holds no certificates")
	}
	if bytes.Contains(before, []byte("PRIVATE KEY")) {
		t.Fatal("the bundle holds a private key")
	}

	// Readable, not writable, not replaceable.
	out := filepath.Join(s.ws, "out", "copy.pem")
	r = run(t, s.rt, "gh", "-c", fmt.Sprintf(`cat "$SSL_CERT_FILE" > %s && echo read-ok
echo evil >> "$SSL_CERT_FILE" 2>/dev/null && echo WROTE
rm -f "$SSL_CERT_FILE" 2>/dev/null && echo REMOVED
echo ok >> %s && echo control-write-ok`, out, out))
	got := string(r.Stdout)
	if !strings.Contains(got, "read-ok") || strings.Contains(got, "WROTE") || strings.Contains(got, "REMOVED") || !strings.Contains(got, "control-write-ok") {
		t.Errorf("gh on the bundle: %q (stderr %q); want read-ok and control-write-ok only", got, r.Stderr)
	}
	if after, _ := os.ReadFile(bundle); !bytes.Equal(before, after) {
		t.Error("the bundle changed")
	}
	// Control for the read rule: a tool of a profile without secrets cannot read it.
	if r := run(t, s.rt, "cat", bundle); r.ExitCode == 0 {
		t.Errorf("cat (no secrets) read the bundle")
	}
	if err := s.rt.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(bundle)); !os.IsNotExist(err) {
		t.Errorf("the CA directory outlives the runtime: %v", err)
	}
}

// New fails closed, naming the secret and the field, when a value cannot be
// read, and never prints a value.
func TestEgressSecretsNewErrors(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 4)
	dir := t.TempDir()
	multi := filepath.Join(dir, "multi")
	if err := os.WriteFile(multi, []byte("line-one-s3cret\nline-two-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Unsetenv("AGENTEXEC_TEST_UNSET_TOKEN")
	tests := []struct{ name, source, want string }{
		{"missing variable", "env: AGENTEXEC_TEST_UNSET_TOKEN", `test.yaml:3:3: secrets.gh.env: the secret gh: AGENTEXEC_TEST_UNSET_TOKEN is not set in the runtime's environment`},
		{"missing file", "{file: " + filepath.Join(dir, "nope") + ", as: GH_TOKEN}", `test.yaml:3:3: secrets.gh.file: cannot read the secret gh: open ` + filepath.Join(dir, "nope") + `: no such file or directory`},
		{"line break", "{file: " + multi + ", as: GH_TOKEN}", `test.yaml:3:3: secrets.gh.file: the secret gh (file ` + multi + `) holds a control character at byte 15`},
		{"empty file", "{file: " + empty + ", as: GH_TOKEN}", `test.yaml:3:3: secrets.gh.file: the secret gh is empty (file ` + empty + `)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var top string
			if strings.HasPrefix(tt.source, "env:") {
				top = "secrets:\n  gh:\n    " + tt.source + "\n    hosts: [api.test]\n"
			} else {
				top = "secrets:\n  gh: " + strings.TrimSuffix(tt.source, "}") + ", hosts: [api.test]}\n"
			}
			p, _ := testPolicyFull(t, top, "  gh:\n    exec: /bin/sh\n    network: {allow: [api.test], secrets: [gh]}\n", "require")
			rt, err := agentexec.New(context.Background(), p)
			if err == nil {
				rt.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v\nwant it to contain: %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error holds the value: %v", err)
			}
		})
	}
}
