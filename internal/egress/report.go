package egress

import (
	"fmt"
	"strconv"
	"time"
)

// Checks a Denial can name.
const (
	// CheckAuth: no valid launch credential (counted in Stats only: an
	// unauthenticated request belongs to no launch).
	CheckAuth = "auth"
	// CheckDestination: no allow entry matches the host and port.
	CheckDestination = "destination"
	// CheckAddress: the name resolved to a refused address (loopback, private,
	// link-local, …) that no IP-literal entry names.
	CheckAddress = "address"
	// CheckResolve: the name did not resolve.
	CheckResolve = "resolve"
	// CheckSNI: a tunnel's TLS ClientHello named another host than its CONNECT.
	CheckSNI = "sni"
	// CheckHost: an intercepted request's Host header named another host than
	// its CONNECT.
	CheckHost = "host"
	// CheckRequest: a request the proxy does not forward (a scheme other than
	// http, a relative URL, a method it does not proxy).
	CheckRequest = "request"
)

// Denial is one refused request of a launch: which check and which rule refused
// which destination, and the entry that would allow it.
type Denial struct {
	Time time.Time `json:"time"`
	// Rule is the list that refused ("tools.curl.network.allow"), or "egress" for
	// checks no policy entry can lift (SNI, request form).
	Rule string `json:"rule"`
	// Check is one of the Check constants.
	Check string `json:"check"`
	// Method is CONNECT, SOCKS5 ("SOCKS5 BIND", "SOCKS5 UDP ASSOCIATE" for the
	// refused commands) or the HTTP method of a plain HTTP request.
	Method string `json:"method"`
	Host   string `json:"host"`
	Port   uint16 `json:"port"`
	// Addr is the resolved address that was refused (CheckAddress).
	Addr string `json:"addr,omitempty"`
	// Reason says what was wrong, in words.
	Reason string `json:"reason"`
	// Allow is the entry that would allow the request ("example.com",
	// "10.0.0.5:5432"), "" when none can.
	Allow string `json:"allow,omitempty"`
}

// Error formats the denial as
// `rule tools.curl.network.allow: CONNECT evil.example:443: no allow entry matches (allow "evil.example")`.
func (d *Denial) Error() string {
	s := fmt.Sprintf("rule %s: %s %s: %s", d.Rule, d.Method, hostPort(d.Host, d.Port), d.Reason)
	if d.Allow != "" {
		s += fmt.Sprintf(" (allow %q)", d.Allow)
	}
	return s
}

// Conn is one allowed connection (a tunnel, or one plain HTTP request).
type Conn struct {
	Time   time.Time `json:"time"`
	Method string    `json:"method"`
	Host   string    `json:"host"`
	Port   uint16    `json:"port"`
	// Addr is the address dialled (the one the check resolved and approved).
	Addr string `json:"addr"`
	// Rule is the field path of the allow entry that matched
	// ("tools.git.network.allow[0]").
	Rule string `json:"rule"`
	// Sent counts the bytes from the tool to the destination, Received the other
	// way: payload bytes of a tunnel (TLS records included), request and response
	// bytes on the wire of a plain HTTP request.
	Sent     int64 `json:"sent"`
	Received int64 `json:"received"`
	// Intercepted marks tunnels the proxy terminated TLS for (secrets).
	Intercepted bool `json:"intercepted,omitempty"`
	// Error is what ended the connection abnormally (dial failure, …), if anything.
	Error string `json:"error,omitempty"`
	// DurationMS is how long the connection lasted.
	DurationMS float64 `json:"duration_ms"`
}

// Report is what a launch did through the proxy, returned by Session.Close.
type Report struct {
	Launch  string   `json:"launch"`
	Allowed []Conn   `json:"allowed,omitempty"`
	Denied  []Denial `json:"denied,omitempty"`
	// DroppedAllowed and DroppedDenied count entries beyond MaxReportEntries
	// (counted in the totals, not listed).
	DroppedAllowed int `json:"dropped_allowed,omitempty"`
	DroppedDenied  int `json:"dropped_denied,omitempty"`
	// Sent and Received add up the bytes of every allowed connection.
	Sent     int64 `json:"sent"`
	Received int64 `json:"received"`
}

// MaxReportEntries bounds each of Report.Allowed and Report.Denied.
const MaxReportEntries = 1000

// Stats are the proxy's counters since New.
type Stats struct {
	Sessions     int64 `json:"sessions"`
	Allowed      int64 `json:"allowed"`
	Denied       int64 `json:"denied"`
	AuthFailures int64 `json:"auth_failures"`
	Intercepted  int64 `json:"intercepted"`
	Sent         int64 `json:"sent"`
	Received     int64 `json:"received"`
}

func hostPort(h string, p uint16) string {
	if len(h) > 0 && h[0] != '[' && containsColon(h) {
		h = "[" + h + "]"
	}
	return h + ":" + strconv.Itoa(int(p))
}

func containsColon(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return true
		}
	}
	return false
}
