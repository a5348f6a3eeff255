package egress

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/agentexec/agentexec/policy"
)

// BenchmarkHTTPS is a small HTTPS GET to a loopback origin, direct and through
// the proxy (a CONNECT tunnel, no interception), in the same run: the proxy's
// added cost per request (docs/network.md, "Cost"). Each request opens a new
// connection (keep-alives off), as a tool started per call does.
func BenchmarkHTTPS(b *testing.B) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	url := fmt.Sprintf("https://127.0.0.1:%d/x", port)
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	run := func(b *testing.B, c *http.Client) {
		for b.Loop() {
			if code, _, err := get(c, url); err != nil || code != 200 {
				b.Fatal(code, err)
			}
		}
	}
	b.Run("direct", func(b *testing.B) {
		run(b, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true}})
	})
	b.Run("proxy", func(b *testing.B) {
		p, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		allow, err := policy.ParseAllow("tools.t.network.allow[0]", fmt.Sprintf("127.0.0.1:%d", port), policy.DefaultAllowPorts)
		if err != nil {
			b.Fatal(err)
		}
		s, err := p.Session("bench", &policy.Egress{Field: "tools.t.network.allow", Allow: allow}, nil)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		run(b, client(s.ProxyURL(), roots, ""))
	})
}

// BenchmarkProxyStart is the proxy's start-up and stop (New: listen and serve;
// Close), and reports the heap an idle proxy holds.
func BenchmarkProxyStart(b *testing.B) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	idle, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	idle.Close()
	for b.Loop() {
		p, err := New(Config{})
		if err != nil {
			b.Fatal(err)
		}
		p.Close()
	}
	b.ReportMetric(float64(after.HeapAlloc)-float64(before.HeapAlloc), "idle-heap-B")
}
