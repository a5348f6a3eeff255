package agentexec_test

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/egress"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// hostsResolver is the egress proxy's resolver in these tests: a hosts map, so
// that names like pypi.test reach servers on this machine's loopback.
type hostsResolver map[string]netip.Addr

func (h hostsResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := h[strings.ToLower(host)]; ok {
		return []netip.Addr{a}, nil
	}
	return nil, &net.DNSError{Err: "no such host (test hosts map)", Name: host, IsNotFound: true}
}

// withHosts gives the runtime's egress proxy the names → 127.0.0.1 map.
func withHosts(names ...string) agentexec.Option {
	h := hostsResolver{}
	for _, n := range names {
		h[n] = netip.MustParseAddr("127.0.0.1")
	}
	return agentexec.WithEgressConfigForTest(func(c *egress.Config) { c.Resolver = h })
}

// requestLog records the paths a test server was asked for.
type requestLog struct {
	mu    sync.Mutex
	paths []string
}

func (l *requestLog) add(r *http.Request) {
	l.mu.Lock()
	l.paths = append(l.paths, r.Method+" "+r.URL.Path)
	l.mu.Unlock()
}

func (l *requestLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.paths, ", ")
}

// networkDenial returns the result's first denial of the network layer.
func networkDenial(r agentexec.Result) *policy.Denial {
	i := slices.IndexFunc(r.Denials, func(d policy.Denial) bool { return d.Layer == policy.LayerNetwork })
	if i < 0 {
		return nil
	}
	return &r.Denials[i]
}

// pkgServers serves one package index on loopback twice: over plain HTTP and
// over HTTPS with a certificate for names from a CA the test makes (ca, PEM).
type pkgServers struct {
	httpPort, httpsPort string
	ca                  []byte
}

func startPkgServers(t *testing.T, h http.Handler, names ...string) pkgServers {
	t.Helper()
	ca := newTestCA(t, names...) // egress_secrets_test.go
	plain := httptest.NewServer(h)
	t.Cleanup(plain.Close)
	tlsSrv := httptest.NewUnstartedServer(h)
	tlsSrv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.leaf}}
	tlsSrv.StartTLS()
	t.Cleanup(tlsSrv.Close)
	_, hp, _ := net.SplitHostPort(plain.Listener.Addr().String())
	_, sp, _ := net.SplitHostPort(tlsSrv.Listener.Addr().String())
	return pkgServers{httpPort: hp, httpsPort: sp, ca: ca.pem}
}

// allow is the network.allow list that reaches the servers by name: the name
// and, since it resolves to loopback (refused unless named), the address.
func (s pkgServers) allow(name string) string {
	var l []string
	for _, p := range []string{s.httpPort, s.httpsPort} {
		l = append(l, fmt.Sprintf("%q, %q", name+":"+p, "127.0.0.1:"+p))
	}
	return "[" + strings.Join(l, ", ") + "]"
}

// pkgSchemes are the legs of each package-manager test: plain HTTP (a request in
// absolute form, forwarded) and HTTPS (a CONNECT tunnel, checked for SNI).
var pkgSchemes = []struct{ scheme, method string }{{"http", http.MethodGet}, {"https", http.MethodConnect}}

func (s pkgServers) port(scheme string) string {
	if scheme == "https" {
		return s.httpsPort
	}
	return s.httpPort
}

// checkEgressLogged fails unless the report lists a connection to host:port
// by method that received bytes.
func checkEgressLogged(t *testing.T, r agentexec.Result, method, host, port string) {
	t.Helper()
	if r.Egress == nil {
		t.Fatalf("no egress report")
	}
	ok := slices.ContainsFunc(r.Egress.Allowed, func(c agentexec.EgressConn) bool {
		return c.Method == method && c.Host == host && fmt.Sprint(c.Port) == port && c.Addr == "127.0.0.1:"+port && c.Received > 0 && c.Error == ""
	})
	if !ok || r.Egress.Received == 0 {
		t.Errorf("egress report %+v: want a %s to %s:%s with bytes received", r.Egress, method, host, port)
	}
}

// checkRefused fails unless the result carries a network denial for host:port
// whose hint adds the entry host:port.
func checkRefused(t *testing.T, r agentexec.Result, host, port string) {
	t.Helper()
	d := networkDenial(r)
	if d == nil {
		t.Fatalf("denials %+v: want a network denial for %s:%s", r.Denials, host, port)
	}
	want := host + ":" + port
	if d.Object.Name != host || fmt.Sprint(d.Object.Port) != port || d.Hint == nil || len(d.Hint.Patch) != 1 || d.Hint.Patch[0].Add != want {
		t.Errorf("network denial %+v (hint %+v): want %s with a hint adding %q", d, d.Hint, want, want)
	}
}

// wheel builds a minimal valid wheel of name 1.0 (pure Python, any platform):
// the package, METADATA, WHEEL and a RECORD with each file's sha256.
func wheel(t *testing.T, name string) []byte {
	t.Helper()
	di := name + "-1.0.dist-info/"
	files := []struct{ name, body string }{
		{name + "/__init__.py", "VALUE = 'through the egress proxy'\n"},
		{di + "METADATA", "Metadata-Version: 2.1\nName: " + name + "\nVersion: 1.0\nSummary: agentexec egress test package\n"},
		{di + "WHEEL", "Wheel-Version: 1.0\nGenerator: agentexec-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	var record strings.Builder
	for _, f := range files {
		w, err := zw.Create(f.name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(f.body))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", f.name, base64.RawURLEncoding.EncodeToString(sum[:]), len(f.body))
	}
	record.WriteString(di + "RECORD,,\n")
	w, err := zw.Create(di + "RECORD")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(record.String())); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// python is an interpreter with pip, found as the test's PATH finds python3 (a
// pyenv shim resolves to the real interpreter through sys.executable).
type python struct {
	exe     string   // the interpreter, symlinks resolved
	bin     string   // the directory sys.executable names (first in the tool's PATH)
	version string   // pip's
	roots   []string // directories outside /usr the interpreter needs
}

func findPython(t *testing.T) python {
	t.Helper()
	py := testutil.RequireCommand(t, "python3")
	out, err := exec.Command(py, "-c", "import sys, pip; print(sys.executable); print(sys.prefix); print(sys.base_prefix); print(pip.__version__)").Output()
	if err != nil {
		testutil.SkipMissingCommand(t, "pip", "requires pip for %s (python3 -m pip): %v", py, err)
	}
	l := strings.Fields(string(out))
	if len(l) != 4 {
		t.Fatalf("%s: unexpected answer %q", py, out)
	}
	exe, err := filepath.EvalSymlinks(l[0])
	if err != nil {
		t.Fatal(err)
	}
	// The runtime sets argv[0] to the executable's base name (python3.11) and
	// Python finds its prefix by looking argv[0] up on PATH: the directory
	// sys.executable names comes first in the tools' PATH, or /usr/bin/python3.11
	// would be taken for this interpreter's location.
	p := python{exe: exe, bin: filepath.Dir(l[0]), version: l[3]}
	for _, d := range []string{p.bin, filepath.Dir(exe), l[1], l[2]} {
		if d, err = filepath.EvalSymlinks(d); err == nil && !policy.Beneath(d, "/usr") && !slices.Contains(p.roots, d) {
			p.roots = append(p.roots, d)
		}
	}
	return p
}

// A real `pip download` through the egress proxy from a PEP 503 simple index on
// loopback, named pypi.test by the proxy's resolver, over plain HTTP (forwarded)
// and HTTPS (a CONNECT tunnel; pip trusts the test CA through PIP_CERT): the
// wheel arrives with its hash and the report logs the index; the control, a tool
// whose list does not name the index, fails with a denial whose hint adds it.
func TestEgressPipDownload(t *testing.T) {
	testutil.RequireLandlockABI(t, 4)
	py := findPython(t)
	const name = "egressprobe"
	whl := wheel(t, name)
	sum := sha256.Sum256(whl)
	file := name + "-1.0-py3-none-any.whl"
	var log requestLog
	srv := startPkgServers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		switch r.URL.Path {
		case "/simple/" + name + "/":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, "<!DOCTYPE html>\n<html><body>\n<a href=\"../../files/%s#sha256=%s\">%s</a>\n</body></html>\n", file, hex.EncodeToString(sum[:]), file)
		case "/files/" + file:
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(whl)
		default:
			http.NotFound(w, r)
		}
	}), "pypi.test")

	var roots string
	for _, d := range py.roots {
		roots += fmt.Sprintf(", %q", d)
	}
	tool := func(name, home, allow string) string {
		return fmt.Sprintf(`  %s:
    exec: %q
    filesystem:
      read+: [/dev/urandom, "${TMPDIR}"%s]
      exec+: [%q]
      write+: ["${TMPDIR}"]
    env:
      set+: {PATH: "%s:/usr/bin:/bin", HOME: "${TMPDIR}/%s", PIP_CERT: "${WORKSPACE}/ca.pem"}
    limits: {timeout: 2m}
    network:
      allow: %s
`, name, py.exe, roots, py.bin, py.bin, home, allow)
	}
	p, ws := testPolicy(t, tool("pip", "pip", srv.allow("pypi.test"))+tool("pipother", "pipother", `["example.test"]`))
	if err := os.WriteFile(filepath.Join(ws, "ca.pem"), srv.ca, 0o644); err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t, p, withHosts("pypi.test", "example.test"))
	args := func(scheme, dest string) []string {
		host := "pypi.test:" + srv.port(scheme)
		return []string{"-m", "pip", "download", "--no-deps", "--no-input", "--retries", "0",
			"--index-url", scheme + "://" + host + "/simple/", "--trusted-host", host, "-d", dest, name + "==1.0"}
	}
	for _, sc := range pkgSchemes {
		t.Run(sc.scheme, func(t *testing.T) {
			port := srv.port(sc.scheme)
			dest := filepath.Join(ws, "out", sc.scheme)
			r := run(t, rt, "pip", args(sc.scheme, dest)...)
			if r.ExitCode != 0 {
				t.Fatalf("pip %s download through the proxy: exit %d\nstdout %s\nstderr %s\nserver saw: %s\ndenials %+v", py.version, r.ExitCode, r.Stdout, r.Stderr, &log, r.Denials)
			}
			got, err := os.ReadFile(filepath.Join(dest, file))
			if err != nil {
				t.Fatalf("no wheel in %s: %v\n%s", dest, err, r.Stderr)
			}
			if gs := sha256.Sum256(got); gs != sum {
				t.Errorf("downloaded wheel sha256 %x, want %x", gs, sum)
			}
			checkEgressLogged(t, r, sc.method, "pypi.test", port)
			if len(r.Denials) != 0 {
				t.Errorf("denials %+v, want none", r.Denials)
			}
			t.Logf("pip %s (%s): %d connections, %d bytes received; stderr %q", py.version, py.exe, len(r.Egress.Allowed), r.Egress.Received, r.Stderr)

			// Control: the same download by a tool whose list does not name the index.
			r = run(t, rt, "pipother", args(sc.scheme, dest+"-refused")...)
			if r.ExitCode == 0 {
				t.Errorf("pip download without the allow entry succeeded:\n%s", r.Stdout)
			}
			checkRefused(t, r, "pypi.test", port)
			t.Logf("refused: %s", r.Stderr)
			if _, err := os.Stat(filepath.Join(dest+"-refused", file)); err == nil {
				t.Errorf("the control downloaded the wheel")
			}
		})
	}
	t.Logf("server saw %s", &log)
}

// npmTarball builds a package tarball as npm publishes it: package/package.json
// and package/index.js, gzipped.
func npmTarball(t *testing.T, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []struct{ name, body string }{
		{"package/package.json", fmt.Sprintf(`{"name": %q, "version": "1.0.0", "main": "index.js", "license": "MIT"}`+"\n", name)},
		{"package/index.js", "module.exports = 'through the egress proxy';\n"},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A real `npm pack` through the egress proxy from a registry on loopback, named
// registry.test by the proxy's resolver, over plain HTTP and HTTPS (npm trusts
// the test CA through npm_config_cafile: NODE_EXTRA_CA_CERTS is not enough where
// npm has a cafile, as global npmrc files often set): the packument and the tarball
// (checked by npm against the packument's sha512 integrity) arrive, the tarball
// lands in the workspace unchanged and the report logs the registry; the
// control, a tool whose list does not name the registry, fails with a denial
// whose hint adds it.
func TestEgressNpmPack(t *testing.T) {
	testutil.RequireLandlockABI(t, 4)
	npm := "/usr/bin/npm"
	if _, err := os.Stat(npm); err != nil {
		t.Skipf("requires npm at %s: %v", npm, err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skipf("requires node (npm's interpreter): %v", err)
	}
	const name = "egressprobe"
	tgz := npmTarball(t, name)
	sha := sha512.Sum512(tgz)
	sha1sum := sha1.Sum(tgz)
	var log requestLog
	srv := startPkgServers(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r)
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		switch r.URL.Path {
		case "/" + name:
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]any{
				"name":      name,
				"dist-tags": map[string]string{"latest": "1.0.0"},
				"versions": map[string]any{"1.0.0": map[string]any{
					"name": name, "version": "1.0.0", "main": "index.js", "license": "MIT",
					"dist": map[string]string{
						"tarball":   scheme + "://" + r.Host + "/" + name + "/-/" + name + "-1.0.0.tgz",
						"integrity": "sha512-" + base64.StdEncoding.EncodeToString(sha[:]),
						"shasum":    hex.EncodeToString(sha1sum[:]),
					},
				}},
			})
		case "/" + name + "/-/" + name + "-1.0.0.tgz":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(tgz)
		default:
			http.NotFound(w, r)
		}
	}), "registry.test")

	tool := func(name, home, allow string) string {
		return fmt.Sprintf(`  %s:
    exec: %s
    filesystem:
      read+: [/dev/urandom, "${TMPDIR}"]
      write+: ["${TMPDIR}"]
    env:
      set+: {HOME: "${TMPDIR}/%s", npm_config_cafile: "${WORKSPACE}/ca.pem"}
    limits: {timeout: 2m}
    network:
      allow: %s
`, name, npm, home, allow)
	}
	p, ws := testPolicy(t, tool("npm", "npm", srv.allow("registry.test"))+tool("npmother", "npmother", `["example.test"]`))
	if err := os.WriteFile(filepath.Join(ws, "ca.pem"), srv.ca, 0o644); err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t, p, withHosts("registry.test", "example.test"))
	file := name + "-1.0.0.tgz"
	for _, sc := range pkgSchemes {
		t.Run(sc.scheme, func(t *testing.T) {
			port := srv.port(sc.scheme)
			registry := sc.scheme + "://registry.test:" + port + "/"
			dest := filepath.Join(ws, "out", sc.scheme)
			for _, d := range []string{dest, dest + "-refused"} {
				if err := os.Mkdir(d, 0o777); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(d, 0o777); err != nil { // the tools' identity writes it
					t.Fatal(err)
				}
			}
			r := run(t, rt, "npm", "pack", name+"@1.0.0", "--registry", registry, "--fetch-retries", "0", "--pack-destination", dest)
			if r.ExitCode != 0 {
				t.Fatalf("npm pack through the proxy: exit %d\nstdout %s\nstderr %s\nserver saw: %s\ndenials %+v", r.ExitCode, r.Stdout, r.Stderr, &log, r.Denials)
			}
			got, err := os.ReadFile(filepath.Join(dest, file))
			if err != nil {
				t.Fatalf("no tarball in %s: %v\n%s", dest, err, r.Stdout)
			}
			if !bytes.Equal(got, tgz) {
				t.Errorf("packed tarball differs from the registry's (%d bytes, want %d)", len(got), len(tgz))
			}
			checkEgressLogged(t, r, sc.method, "registry.test", port)
			if len(r.Denials) != 0 {
				t.Errorf("denials %+v, want none", r.Denials)
			}
			t.Logf("npm: %d connections, %d bytes received", len(r.Egress.Allowed), r.Egress.Received)

			// Control: the same pack by a tool whose list does not name the registry.
			r = run(t, rt, "npmother", "pack", name+"@1.0.0", "--registry", registry, "--fetch-retries", "0", "--pack-destination", dest+"-refused")
			if r.ExitCode == 0 {
				t.Errorf("npm pack without the allow entry succeeded:\n%s", r.Stdout)
			}
			checkRefused(t, r, "registry.test", port)
			t.Logf("refused: %s", r.Stderr)
			if _, err := os.Stat(filepath.Join(dest+"-refused", file)); err == nil {
				t.Errorf("the control packed the tarball")
			}
		})
	}
	t.Logf("server saw %s", &log)
}
