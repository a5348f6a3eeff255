package agentexec_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// proxyGet is the helper mode "proxyget URL": a GET through the proxy the
// launch's environment names (explicitly: Go's own proxy lookup never proxies
// loopback destinations).
func proxyGet(target string) int {
	pu, err := url.Parse(os.Getenv("HTTP_PROXY"))
	if err != nil || pu.Host == "" {
		fmt.Println("proxyget: no HTTP_PROXY in the environment")
		return 3
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	resp, err := c.Get(target)
	if err != nil {
		fmt.Println("proxyget:", err)
		return 1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Printf("status %d\n%s\n", resp.StatusCode, b)
	return 0
}

// A tool with network.allow reaches the listed destination through the runtime's
// egress proxy, is refused elsewhere with a denial naming the entry that would
// allow it, and cannot go around the proxy; the control shows the direct
// connection it was refused is open to a tool whose policy lists the port.
func TestEgressAllowList(t *testing.T) {
	testutil.RequireLandlockABI(t, 4)
	port := startOrigin(t, "hello from the origin")
	other, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	_, otherPort, _ := net.SplitHostPort(other.Addr().String())
	exe, _ := os.Executable()
	p, _ := testPolicy(t, fmt.Sprintf(`  web:
    exec: %q
    network:
      allow: ["127.0.0.1:%s"]
  direct:
    exec: %q
    network: {connect_tcp: [%s]}
`, exe, port, exe, port))
	rt := newRuntime(t, p)

	r := run(t, rt, "web", "-helper", "proxyget", "http://127.0.0.1:"+port+"/")
	if r.ExitCode != 0 || !strings.Contains(string(r.Stdout), "status 200") || !strings.Contains(string(r.Stdout), "hello from the origin") {
		t.Fatalf("allowed destination: exit %d, stdout %q stderr %q", r.ExitCode, r.Stdout, r.Stderr)
	}
	if r.Egress == nil || len(r.Egress.Allowed) != 1 || fmt.Sprint(r.Egress.Allowed[0].Port) != port || r.Egress.Received == 0 {
		t.Errorf("egress report %+v, want the one allowed connection with bytes", r.Egress)
	}

	r = run(t, rt, "web", "-helper", "proxyget", "http://127.0.0.1:"+otherPort+"/")
	if !strings.Contains(string(r.Stdout), "status 403") {
		t.Errorf("unlisted destination: stdout %q, want the proxy's 403", r.Stdout)
	}
	i := slices.IndexFunc(r.Denials, func(d policy.Denial) bool { return d.Layer == policy.LayerNetwork })
	if i < 0 {
		t.Fatalf("unlisted destination: denials %+v, want a network denial", r.Denials)
	}
	if d := r.Denials[i]; fmt.Sprint(d.Object.Port) != otherPort || d.Hint == nil || !strings.Contains(d.Hint.Text, "127.0.0.1:"+otherPort) {
		t.Errorf("network denial %+v (hint %+v): want the port and a hint adding 127.0.0.1:%s", d, d.Hint, otherPort)
	}

	// Around the proxy: a direct connection to the allowed origin is refused
	// (Landlock allows the tool's TCP connects to the proxy's port only).
	if r := run(t, rt, "web", "-helper", "net", "tcp", "127.0.0.1:"+port); r.ExitCode == 0 {
		t.Errorf("direct connection from a tool with network.allow succeeded: %q", r.Stdout)
	}
	// Control: a tool whose policy lists the port connects directly.
	if r := run(t, rt, "direct", "-helper", "net", "tcp", "127.0.0.1:"+port); r.ExitCode != 0 {
		t.Errorf("control: connect_tcp tool could not connect: %q %q", r.Stdout, r.Stderr)
	}
	// And a tool without egress gets no proxy at all.
	if r := run(t, rt, "self", "-helper", "env"); strings.Contains(string(r.Stdout), "HTTP_PROXY=") {
		t.Errorf("a tool without network.allow got a proxy: %q", r.Stdout)
	}
}

// A real `git clone` over HTTP through the egress proxy: git's own http-backend
// (served by net/http/cgi on loopback) is the origin, the policy lists it, and
// the clone lands in the workspace; the control is the same clone by a tool
// without the allow entry, which the proxy refuses.
func TestEgressGitClone(t *testing.T) {
	testutil.RequireLandlockABI(t, 4)
	backend := "/usr/lib/git-core/git-http-backend"
	if _, err := os.Stat(backend); err != nil {
		t.Skipf("git's http-backend not installed (%v); make setup installs git", err)
	}
	root := t.TempDir()
	src := filepath.Join(root, "src")
	for _, args := range [][]string{
		{"init", "-q", "-b", "main", src},
		{"-C", src, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "first"},
		{"clone", "-q", "--bare", src, filepath.Join(root, "repo.git")},
	} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "repo.git", "git-daemon-export-ok"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(&cgi.Handler{Path: backend, Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}})
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, ws := testPolicy(t, fmt.Sprintf(`  gitnet:
    exec: /usr/bin/git
    filesystem: {read+: [/dev/urandom]}
    network:
      allow: ["127.0.0.1:%s"]
  gitother:
    exec: /usr/bin/git
    filesystem: {read+: [/dev/urandom]}
    network:
      allow: ["example.test"]
`, port))
	rt := newRuntime(t, p)
	url := "http://127.0.0.1:" + port + "/repo.git"
	r := run(t, rt, "gitnet", "clone", "-q", url, filepath.Join(ws, "out", "clone"))
	if r.ExitCode != 0 {
		t.Fatalf("git clone through the proxy: exit %d\n%s", r.ExitCode, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(ws, "out", "clone", ".git")); err != nil {
		t.Fatalf("no clone in the workspace: %v", err)
	}
	if r.Egress == nil || len(r.Egress.Allowed) == 0 || r.Egress.Received == 0 {
		t.Errorf("egress report %+v, want the clone's requests", r.Egress)
	}
	// Control: a tool whose list does not name the origin is refused by the proxy.
	r = run(t, rt, "gitother", "clone", "-q", url, filepath.Join(ws, "out", "clone2"))
	if r.ExitCode == 0 || !slices.ContainsFunc(r.Denials, func(d policy.Denial) bool { return d.Layer == policy.LayerNetwork }) {
		t.Errorf("unlisted origin: exit %d, denials %+v", r.ExitCode, r.Denials)
	}
}

// startOrigin serves body over HTTP on loopback for the test and returns its port.
func startOrigin(t *testing.T, body string) string {
	t.Helper()
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, body)
	}))
	t.Cleanup(origin.Close)
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	return port
}
