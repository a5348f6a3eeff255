package egress

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentexec/agentexec/policy"
)

// Real package managers (npm, pip), run on this machine with only a launch's
// Env (plus HOME and PATH), fetching from a secret's host over HTTPS through the
// intercepting proxy: they must trust the launch's CA bundle through the
// variables Env sets, and the registry must receive the real credential, never
// the placeholder. No sandbox: these tests check the proxy and the variables,
// not containment (the root package's TestEgressPipDownload and
// TestEgressNpmPack run them sandboxed).

// pkgRegistry is a TLS registry on loopback, named example.com (httptest's
// certificate name), that answers only requests carrying want as their
// Authorization and records the Authorization headers it received.
type pkgRegistry struct {
	*httptest.Server
	mu    sync.Mutex
	auths []string
}

func newPkgRegistry(t *testing.T, want string, routes map[string]string) *pkgRegistry {
	reg := &pkgRegistry{}
	reg.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := r.Header.Get("Authorization")
		reg.mu.Lock()
		reg.auths = append(reg.auths, r.URL.Path+" "+a)
		reg.mu.Unlock()
		body, ok := routes[r.URL.Path]
		switch {
		case !ok:
			http.NotFound(w, r)
		case a != want:
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
		case strings.HasPrefix(body, "<"):
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, body)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, body)
		}
	}))
	t.Cleanup(reg.Close)
	return reg
}

func (r *pkgRegistry) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.auths...)
}

// interceptingSession is a proxy with one secret (env NAME=placeholder) bound
// to example.com:port, which resolves to loopback, and a session that may
// reach it; the system roots of its bundle are sysRoots.
func interceptingSession(t *testing.T, reg *httptest.Server, envName, value string) (*Session, string) {
	t.Helper()
	port := reg.Listener.Addr().String()[strings.LastIndex(reg.Listener.Addr().String(), ":")+1:]
	dir := t.TempDir()
	sysRoots := filepath.Join(dir, "system.pem")
	// The system part of the bundle: a certificate that has nothing to do with
	// the registry, so only the proxy's CA can make the registry verify.
	other := httptest.NewTLSServer(http.NotFoundHandler())
	other.Close()
	if err := os.WriteFile(sysRoots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: other.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	hosts, err := policy.ParseAllow("secrets.reg.hosts[0]", "example.com:"+port, nil)
	if err != nil {
		t.Fatal(err)
	}
	pool := poolOf(&origin{Server: reg})
	e := newProxy(t, Config{Secrets: []*Secret{{Name: "reg", Env: envName, Value: value, Hosts: hosts}},
		CADir: dir, SystemRoots: sysRoots, UpstreamRoots: pool})
	e.resolve("example.com", "127.0.0.1")
	s, err := e.p.Session("pkg", egressOf(t, []string{"example.com:" + port, "127.0.0.1:" + port}), []string{"reg"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, sysRoots
}

// envValue is the value of name in env ("" if absent).
func envValue(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// envWithout is env less the variables named.
func envWithout(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		keep := true
		for _, n := range names {
			keep = keep && k != n
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

func runPkgTool(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// npm reads its registry token from an npmrc line that names the variable
// holding the placeholder; the proxy puts the real token in the Bearer header.
// npm trusts the proxy's CA only through npm_config_cafile: the control (the
// same Env without it, and a cafile configured, as global npmrc files often have)
// fails to verify the registry although NODE_EXTRA_CA_CERTS names the bundle.
func TestNpmThroughInterception(t *testing.T) {
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skipf("requires npm: %v", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skipf("requires node (npm's interpreter): %v", err)
	}
	const real = "npm-real-token-42"
	routes := map[string]string{"/egressprobe": `{"name":"egressprobe","dist-tags":{"latest":"1.0.0"},"versions":{"1.0.0":{"name":"egressprobe","version":"1.0.0","dist":{"tarball":"https://example.com/none.tgz"}}}}`}
	reg := newPkgRegistry(t, "Bearer "+real, routes)
	s, sysRoots := interceptingSession(t, reg.Server, "NPM_TOKEN", real)
	port := reg.Listener.Addr().String()[strings.LastIndex(reg.Listener.Addr().String(), ":")+1:]
	// A fresh HOME (npm's cache) for each run: npm answers from its cache when
	// the registry fails.
	home := func() string {
		h := t.TempDir()
		if err := os.WriteFile(filepath.Join(h, ".npmrc"), []byte("//example.com:"+port+"/:_authToken=${NPM_TOKEN}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return "HOME=" + h
	}
	env := append(s.Env(), home(), "PATH="+filepath.Dir(npm)+":"+filepath.Dir(node)+":/usr/bin:/bin", "npm_config_update_notifier=false")
	if envValue(env, "npm_config_cafile") != s.p.CABundle() || envValue(env, "NODE_EXTRA_CA_CERTS") != s.p.CABundle() {
		t.Fatalf("env %q: want npm_config_cafile and NODE_EXTRA_CA_CERTS = %s", env, s.p.CABundle())
	}
	args := []string{"view", "egressprobe", "version", "--registry", "https://example.com:" + port + "/", "--fetch-retries", "0"}
	out, err := runPkgTool(t, env, npm, args...)
	if err != nil || strings.TrimSpace(out) != "1.0.0" {
		t.Fatalf("npm view through the intercepting proxy: %v\n%s\nregistry saw %q", err, out, reg.received())
	}
	for _, a := range reg.received() {
		if strings.Contains(a, s.secrets[0].placeholder) {
			t.Errorf("the registry received the placeholder: %q", a)
		}
	}
	if got := reg.received(); len(got) == 0 || got[0] != "/egressprobe Bearer "+real {
		t.Errorf("registry saw %q, want the real token", got)
	}

	// Control: a configured cafile (here explicitly; global npmrc files often
	// have one) and no npm_config_cafile from the session: npm passes
	// the cafile as the only CAs and ignores NODE_EXTRA_CA_CERTS.
	n := len(reg.received())
	ctl := append(envWithout(env, "npm_config_cafile", "HOME"), "npm_config_cafile="+sysRoots, home())
	out, err = runPkgTool(t, ctl, npm, args...)
	t.Logf("control: %v: %s", err, out)
	if err == nil || !strings.Contains(out, "SELF_SIGNED_CERT_IN_CHAIN") && !strings.Contains(out, "UNABLE_TO_VERIFY_LEAF_SIGNATURE") {
		t.Errorf("control: npm with NODE_EXTRA_CA_CERTS only: %v\n%s", err, out)
	}
	if len(reg.received()) != n {
		t.Errorf("control: the registry received %q", reg.received()[n:])
	}
}

// pip sends the index URL's credentials as Basic; the URL holds the
// placeholder (from the variable), the proxy puts the real token in. pip
// trusts the bundle through PIP_CERT (and REQUESTS_CA_BUNDLE); the control
// without them fails to verify the registry.
func TestPipThroughInterception(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skipf("requires python3: %v", err)
	}
	// A pyenv shim needs the user's HOME: ask the interpreter for itself.
	b, err := exec.Command(py, "-c", "import sys, pip; print(sys.executable)").Output()
	if err != nil {
		t.Skipf("requires pip for %s (python3 -m pip): %v", py, err)
	}
	py = strings.TrimSpace(string(b))
	const real = "pypi-real-token-42"
	routes := map[string]string{"/simple/egressprobe/": `<!DOCTYPE html><html><body><a href="../../files/egressprobe-1.0-py3-none-any.whl">egressprobe-1.0-py3-none-any.whl</a></body></html>`}
	reg := newPkgRegistry(t, "Basic "+base64Std("__token__:"+real), routes)
	s, _ := interceptingSession(t, reg.Server, "PYPI_TOKEN", real)
	port := reg.Listener.Addr().String()[strings.LastIndex(reg.Listener.Addr().String(), ":")+1:]
	env := append(s.Env(), "HOME="+t.TempDir(), "PATH="+filepath.Dir(py)+":/usr/bin:/bin")
	if envValue(env, "PIP_CERT") != s.p.CABundle() {
		t.Fatalf("env %q: want PIP_CERT = %s", env, s.p.CABundle())
	}
	index := "https://__token__:" + envValue(env, "PYPI_TOKEN") + "@example.com:" + port + "/simple/"
	args := []string{"-m", "pip", "index", "versions", "egressprobe", "--index-url", index, "--retries", "0", "--disable-pip-version-check", "--no-input"}
	out, err := runPkgTool(t, env, py, args...)
	if err != nil || !strings.Contains(out, "egressprobe (1.0)") {
		t.Fatalf("pip index versions through the intercepting proxy: %v\n%s\nregistry saw %q", err, out, reg.received())
	}
	for _, a := range reg.received() {
		if strings.Contains(a, base64Std("__token__:"+s.secrets[0].placeholder)) {
			t.Errorf("the registry received the placeholder: %q", a)
		}
	}
	// Control: without the bundle variables pip verifies against its own roots
	// (certifi), which do not hold the proxy's CA.
	n := len(reg.received())
	out, err = runPkgTool(t, envWithout(env, CAVars...), py, args...)
	t.Logf("control: %v: %s", err, out)
	if err == nil || !strings.Contains(out, "CERTIFICATE_VERIFY_FAILED") {
		t.Errorf("control: pip without PIP_CERT: %v\n%s", err, out)
	}
	if len(reg.received()) != n {
		t.Errorf("control: the registry received %q", reg.received()[n:])
	}
}
