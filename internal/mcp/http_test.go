package mcp

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/policy"
)

// noRuntime is a server whose runtime never starts: initialize needs none.
func noRuntime(t *testing.T) *Server {
	t.Helper()
	p, err := policy.Parse("t.yaml", []byte("version: 1\ntools:\n  cat: {exec: /bin/cat}\n"), policy.Options{Workspace: "/w", Home: "/root", CPUs: 1})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(p, func(context.Context) (*agentexec.Runtime, error) { return nil, errors.New("no runtime in this test") }, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`

// initialize posts an initialize request with the given headers ("Host" sets
// the Host header) and returns the status code.
func initialize(t *testing.T, url string, hdr map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(initBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func serveTest(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h) // 127.0.0.1
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestOriginCheck(t *testing.T) {
	s := noRuntime(t)
	url := serveTest(t, s.HTTPHandler(HTTPConfig{AllowedOrigins: []string{"http://localhost:5173"}}))
	self := strings.Replace(url, "http://", "", 1)
	for _, tc := range []struct {
		origin string
		want   int
	}{
		{"", http.StatusOK}, // not a browser
		{"http://localhost:5173", http.StatusOK},
		{"http://localhost:5173/", http.StatusOK},
		{"http://" + self, http.StatusOK}, // the server's own origin
		{"http://evil.example", http.StatusForbidden},
		{"http://localhost:5174", http.StatusForbidden}, // another loopback port is another origin
		{"https://" + self, http.StatusForbidden},       // another scheme too
		{"null", http.StatusForbidden},                  // sandboxed frames, file:// pages
		{"http://127.0.0.1.evil.example", http.StatusForbidden},
	} {
		h := map[string]string{}
		if tc.origin != "" {
			h["Origin"] = tc.origin
		}
		if got := initialize(t, url, h); got != tc.want {
			t.Errorf("Origin %q: status %d, want %d", tc.origin, got, tc.want)
		}
	}
	// The control: without the check, a page of another origin gets through.
	open := serveTest(t, noRuntime(t).HTTPHandler(HTTPConfig{noOriginCheck: true}))
	if got := initialize(t, open, map[string]string{"Origin": "http://evil.example"}); got != http.StatusOK {
		t.Errorf("control: status %d without the Origin check, want 200", got)
	}
}

// A DNS-rebound name reaches the loopback listener with its own Host header.
func TestHostCheck(t *testing.T) {
	url := serveTest(t, noRuntime(t).HTTPHandler(HTTPConfig{}))
	if got := initialize(t, url, map[string]string{"Host": "rebound.evil.example"}); got != http.StatusForbidden {
		t.Errorf("Host rebound.evil.example: status %d, want 403", got)
	}
	if got := initialize(t, url, map[string]string{"Host": "localhost"}); got != http.StatusOK {
		t.Errorf("Host localhost: status %d, want 200", got)
	}
	open := serveTest(t, noRuntime(t).HTTPHandler(HTTPConfig{noHostCheck: true}))
	if got := initialize(t, open, map[string]string{"Host": "rebound.evil.example"}); got != http.StatusOK {
		t.Errorf("control: status %d without the Host check, want 200", got)
	}
}

func TestBearerToken(t *testing.T) {
	url := serveTest(t, noRuntime(t).HTTPHandler(HTTPConfig{Token: "s3cret-token"}))
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"Bearer s3cret-token-and-more", http.StatusUnauthorized},
		{"s3cret-token", http.StatusUnauthorized},
		{"Bearer s3cret-token", http.StatusOK},
	} {
		h := map[string]string{}
		if tc.auth != "" {
			h["Authorization"] = tc.auth
		}
		if got := initialize(t, url, h); got != tc.want {
			t.Errorf("Authorization %q: status %d, want %d", tc.auth, got, tc.want)
		}
	}
	// The control: without a token configured, anyone who reaches the port is served.
	open := serveTest(t, noRuntime(t).HTTPHandler(HTTPConfig{}))
	if got := initialize(t, open, nil); got != http.StatusOK {
		t.Errorf("control: status %d without a token, want 200", got)
	}
}

func TestCheckListen(t *testing.T) {
	for _, tc := range []struct {
		addr  string
		token bool
		err   string
	}{
		{"127.0.0.1:8765", false, ""},
		{"localhost:0", false, ""},
		{"[::1]:8765", false, ""},
		{"127.0.0.2:8765", false, ""},
		{"0.0.0.0:8765", false, "a bearer token is required"},
		{":8765", false, "a bearer token is required"},
		{"192.0.2.1:8765", false, "a bearer token is required"},
		{"0.0.0.0:8765", true, ""},
		{"example.com:8765", true, "must be an IP address or localhost"},
		{"127.0.0.1", false, "want HOST:PORT"},
		{"127.0.0.1:", false, "no port"},
	} {
		err := CheckListen(tc.addr, tc.token)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("CheckListen(%q, %v) = %v, want %q", tc.addr, tc.token, err, tc.err)
		}
	}
}

// A runtime that failed to start makes calls fail with the reason, not hang.
func TestRuntimeStartFailure(t *testing.T) {
	s := noRuntime(t)
	s.Start(context.Background())
	st, ct := sdk.NewInMemoryTransports()
	ss, err := s.SDKServer().Connect(context.Background(), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "t", Version: "1"}, nil).Connect(context.Background(), ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, out, text := decode(t, must(cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "cat", Arguments: map[string]any{"args": []string{}}})))
	if !res.IsError || out.Status != "error" || !strings.Contains(text, "the sandbox runtime failed to start: no runtime in this test") {
		t.Errorf("call: isError %v %+v\n%s", res.IsError, out, text)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
