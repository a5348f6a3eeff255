// Package egress is agentexec's egress proxy: an allow-listing HTTP forward proxy
// (CONNECT tunnels for TLS and ssh, absolute-form plain HTTP) that the runtime
// starts once and that every launch with network.allow or network.ssh reaches
// through a credential of its own (docs/network.md).
//
//	p, err := egress.New(egress.Config{})             // listens on 127.0.0.1, a free port
//	defer p.Close()
//	s, err := p.Session("launch-42", tool.Egress, nil) // per launch: a fresh credential
//	env := append(env, s.Env()...)                   // HTTP_PROXY=http://launch-42:TOKEN@127.0.0.1:PORT …
//	… launch with a Landlock connect rule for p.Port() …
//	report := s.Close()                              // revokes the credential; allowed and refused connections
//
// # What it owns
//
// Authenticating each request to a launch (Proxy-Authorization basic, launch id
// and a random token; unauthenticated and revoked credentials get 407), matching
// the destination against that launch's policy.Egress, resolving names itself
// and refusing non-public addresses unless an IP-literal entry names them,
// dialling exactly the address it checked (no second lookup: no DNS rebinding),
// checking a tunnel's TLS SNI against its CONNECT host, and recording every
// allowed connection (bytes each way) and every refusal (a Denial naming the
// rule and the entry that would allow it) in the launch's Report and in Stats.
// SOCKS5 (RFC 1928 CONNECT, RFC 1929 username/password carrying the same
// credential) is served on the same port: a connection whose first byte is 0x05
// is SOCKS5, anything else HTTP; both go through the same checks. Serve adds
// listeners (the runtime's listener inside a tool network namespace).
// With secrets configured it terminates TLS for their hosts only, with a CA that
// exists only in memory, and puts the real values in place of placeholders in
// request headers.
//
// # What it must not import
//
// The root package, internal/spawner, internal/templates, internal/contain,
// internal/cgroup and internal/sys: the proxy runs in the runtime's own process,
// never in a sandbox, and knows nothing of launches beyond their id and their
// policy.Egress. It imports only the standard library, policy and
// golang.org/x/crypto/ssh (the filtering ssh-agent of network.ssh_agent) and
// golang.org/x/sys/unix (its peer check).
package egress
