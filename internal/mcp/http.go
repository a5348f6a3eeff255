package mcp

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// DefaultSessionTimeout closes an HTTP session that saw no request for this long
// (its launches in flight are killed).
const DefaultSessionTimeout = 30 * time.Minute

// HTTPConfig configures the streamable HTTP transport.
type HTTPConfig struct {
	// Token, when set, is the bearer token every request must carry
	// (Authorization: Bearer TOKEN). It is required when the listen address is
	// not a loopback address (CheckListen).
	Token string
	// AllowedOrigins are the browser origins ("http://localhost:5173") whose
	// requests are served, besides the server's own origin on loopback. A request
	// with any other Origin header is refused with 403; requests without one
	// (every non-browser client) are served.
	AllowedOrigins []string
	// SessionTimeout closes idle sessions (default DefaultSessionTimeout; negative:
	// never).
	SessionTimeout time.Duration

	// noOriginCheck and noHostCheck turn the two checks off: only the tests'
	// controls use them, to show the requests they refuse get through without.
	noOriginCheck, noHostCheck bool
}

// CheckListen validates a --listen address: host:port with an IP address or
// "localhost" as host. A host that is not loopback (or an empty host, which
// listens on every interface) needs a token.
func CheckListen(addr string, haveToken bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: want HOST:PORT, such as 127.0.0.1:8765: %w", addr, err)
	}
	if port == "" {
		return fmt.Errorf("--listen %q: no port", addr)
	}
	if isLoopbackHost(host) {
		return nil
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("--listen %q: the host must be an IP address or localhost, not a name (%q)", addr, host)
		}
	}
	if !haveToken {
		return fmt.Errorf("--listen %q is not a loopback address: a bearer token is required (--token-file or AGENTEXEC_MCP_TOKEN)", addr)
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// HTTPHandler is the streamable HTTP transport: one SDK session per client
// (sessions cannot see or cancel each other's calls), behind the Origin check,
// the bearer token and the SDK's Host check (a request that reaches a loopback
// listener with a Host header that is not loopback is refused: DNS rebinding).
func (s *Server) HTTPHandler(hc HTTPConfig) http.Handler {
	timeout := hc.SessionTimeout
	if timeout == 0 {
		timeout = DefaultSessionTimeout
	} else if timeout < 0 {
		timeout = 0
	}
	var h http.Handler = sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s.sdk }, &sdk.StreamableHTTPOptions{
		Logger:                     slog.New(minLevel{s.log.Handler(), slog.LevelWarn}),
		SessionTimeout:             timeout,
		DisableLocalhostProtection: hc.noHostCheck,
	})
	if hc.Token != "" {
		h = bearer(hc.Token, h)
	}
	if !hc.noOriginCheck {
		h = originCheck(hc.AllowedOrigins, h)
	}
	return h
}

// originCheck refuses, with 403, a request whose Origin header is present and not
// allowed (the MCP transport spec's defence against DNS rebinding: a browser page
// can reach a loopback port, and always says where it comes from).
func originCheck(allowed []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Values("Origin"); len(o) > 0 {
			if len(o) > 1 || !originAllowed(allowed, strings.TrimRight(o[0], "/"), r) {
				httpError(w, http.StatusForbidden, fmt.Sprintf("Forbidden: Origin %q is not allowed (agentexec mcp --allow-origin)", strings.Join(o, ", ")))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// originAllowed: an allowed origin, or the server's own origin on loopback
// (http://127.0.0.1:PORT reaching 127.0.0.1:PORT: no page is served there, and a
// page elsewhere, another loopback port included, has another origin).
func originAllowed(allowed []string, origin string, r *http.Request) bool {
	if slices.Contains(allowed, origin) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Scheme != "http" || u.Host != r.Host || u.Path != "" {
		return false
	}
	return isLoopbackHost(u.Hostname())
}

// bearer refuses, with 401, a request without the token.
func bearer(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Values("Authorization")
		if len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="agentexec mcp"`)
			httpError(w, http.StatusUnauthorized, "Unauthorized: a valid bearer token is required")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	m, _ := json.Marshal(msg)
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":%s}}`+"\n", m)
}
