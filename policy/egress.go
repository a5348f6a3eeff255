package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/agentexec/agentexec/internal/yamlnode"
)

// Egress is what a tool may reach through the runtime's egress proxy
// (docs/network.md): the merged network.allow and network.ssh lists of the tool
// and the defaults. A tool without either list has a nil *Egress and no proxy.
type Egress struct {
	// Allow are the HTTP(S) destinations (CONNECT and plain HTTP), presets
	// expanded, de-duplicated, in the order written.
	Allow []Allow
	// SSH are the hosts ssh and git may reach (port 22 unless an entry names
	// another) through the proxy's CONNECT; Allow entries never reach port 22
	// unless they name it.
	SSH []Allow
	// Field is the field path of the allow list in force ("tools.curl.network.allow",
	// "defaults.network.allow"): denials name it as the list to change.
	Field string
	// Secrets are the names of the policy's secrets (Policy.Secrets) the tool is
	// given (network.secrets), in the order written: its launches see their
	// placeholders, and the proxy substitutes the values (secrets.go).
	Secrets []string
	// KnownHosts is the known_hosts file ssh checks the SSH hosts' keys against
	// (network.known_hosts, else DefaultKnownHosts; "" without SSH entries), and
	// KnownHostsField the field that names it (egress_ssh.go).
	KnownHosts, KnownHostsField string
	// SSHAgent is network.ssh_agent: the launch gets an ssh-agent socket that
	// signs only for sessions bound to a key of KnownHosts for an SSH host;
	// SSHAgentField names the field that set it.
	SSHAgent      bool
	SSHAgentField string
}

// Allow is one destination of network.allow or network.ssh.
//
// An entry is a host name ("github.com"), a wildcard ("*.example.com": any name
// strictly below example.com, not example.com itself) or an IP literal
// ("10.0.0.5", "[fd00::1]"), with an optional port (":8443"). Without a port it
// allows 443 and 80 (network.allow) or 22 (network.ssh). Names are matched
// case-insensitively, without a trailing dot. Only an IP literal lifts the refusal
// of loopback, private, link-local and other non-public addresses: a name that
// resolves to such an address is refused unless that address and port are
// themselves allowed by an IP-literal entry.
type Allow struct {
	// Rule is the field path the entry was written at ("tools.git.network.allow[1]").
	Rule string
	// Text is the entry as written ("preset:npm", "*.github.com:443").
	Text string
	// Preset names the preset the entry came from ("npm"), "" if written directly.
	Preset string
	// Host is the lower-case host name or suffix ("example.com" for
	// "*.example.com"); "" for an IP literal.
	Host string
	// Wildcard marks "*.Host" entries.
	Wildcard bool
	// IP is the address of an IP-literal entry (the zero Addr otherwise).
	IP netip.Addr
	// Ports are the allowed ports, sorted.
	Ports []uint16
}

// Default ports of entries that name none.
var (
	DefaultAllowPorts = []uint16{80, 443}
	DefaultSSHPorts   = []uint16{22}
)

// Presets are the named destination sets of `preset:NAME` entries (docs/network.md
// lists them). Each host gets the entry's default ports.
var Presets = map[string][]string{
	// go: the module proxy and checksum database (GOPROXY's default). Modules
	// fetched "direct" from their VCS need the VCS host too (preset:github).
	"go": {"proxy.golang.org", "sum.golang.org"},
	// pypi: the index and the file host pip downloads from.
	"pypi": {"pypi.org", "files.pythonhosted.org"},
	// npm: the npm registry (and yarn's alias of it).
	"npm": {"registry.npmjs.org", "registry.yarnpkg.com"},
	// crates: cargo's sparse index and the crate download host.
	"crates": {"index.crates.io", "static.crates.io", "crates.io"},
	// debian: the Debian archive and its security archive (apt, over HTTP or HTTPS).
	"debian": {"deb.debian.org", "security.debian.org"},
	// github: git over HTTPS, the API, archives, raw files and release assets.
	"github": {"github.com", "api.github.com", "codeload.github.com",
		"raw.githubusercontent.com", "objects.githubusercontent.com"},
}

// PresetNames returns the preset names, sorted.
func PresetNames() []string {
	names := make([]string, 0, len(Presets))
	for n := range Presets {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// String returns the entry in canonical form, as "*.example.com:443" or
// "[fd00::1]:80,443".
func (a Allow) String() string {
	h := a.Host
	switch {
	case a.IP.IsValid() && a.IP.Is6():
		h = "[" + a.IP.String() + "]"
	case a.IP.IsValid():
		h = a.IP.String()
	case a.Wildcard:
		h = "*." + a.Host
	}
	ps := make([]string, len(a.Ports))
	for i, p := range a.Ports {
		ps[i] = strconv.Itoa(int(p))
	}
	return h + ":" + strings.Join(ps, ",")
}

// MatchesName reports whether the entry allows host name host (lower-case, no
// trailing dot, not an IP literal) on port.
func (a Allow) MatchesName(host string, port uint16) bool {
	if a.IP.IsValid() || !slices.Contains(a.Ports, port) {
		return false
	}
	if a.Wildcard {
		return len(host) > len(a.Host)+1 && strings.HasSuffix(host, a.Host) && host[len(host)-len(a.Host)-1] == '.'
	}
	return host == a.Host
}

// MatchesAddr reports whether the entry is an IP literal naming ip on port.
func (a Allow) MatchesAddr(ip netip.Addr, port uint16) bool {
	return a.IP.IsValid() && a.IP == ip.Unmap().WithZone("") && slices.Contains(a.Ports, port)
}

// ParseAllow parses one network.allow (defPorts DefaultAllowPorts) or network.ssh
// (DefaultSSHPorts) entry; a preset gives one Allow per host. rule is the field
// path recorded in each Allow. The error says what is wrong with s.
func ParseAllow(rule, s string, defPorts []uint16) ([]Allow, error) {
	if name, ok := strings.CutPrefix(s, "preset:"); ok {
		hosts, found := Presets[name]
		if !found {
			return nil, fmt.Errorf("%q: unknown preset %q (known: %s)", s, name, strings.Join(PresetNames(), ", "))
		}
		out := make([]Allow, len(hosts))
		for i, h := range hosts {
			out[i] = Allow{Rule: rule, Text: s, Preset: name, Host: h, Ports: slices.Clone(defPorts)}
		}
		return out, nil
	}
	a, err := parseAllowEntry(s, defPorts)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	a.Rule, a.Text = rule, s
	return []Allow{a}, nil
}

func parseAllowEntry(s string, defPorts []uint16) (Allow, error) {
	var a Allow
	switch {
	case s == "":
		return a, fmt.Errorf("empty destination")
	case strings.Contains(s, "://"):
		return a, fmt.Errorf("a destination is a host with an optional port, not a URL: drop the scheme (write %q)", hostOfURL(s))
	case strings.ContainsAny(s, "/?#@ \t\r\n\x00"):
		return a, fmt.Errorf("a destination is a host with an optional port (as example.com or *.example.com:8443), without path, user or spaces")
	}
	var host, portText string
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return a, fmt.Errorf("missing ] after an IPv6 address")
		}
		host, portText = s[1:end], s[end+1:]
		if portText != "" && !strings.HasPrefix(portText, ":") {
			return a, fmt.Errorf("unexpected %q after ]", portText)
		}
		portText = strings.TrimPrefix(portText, ":")
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return a, fmt.Errorf("%q in brackets is not an IPv6 address (without zone)", host)
		}
		a.IP = ip.Unmap()
	} else if strings.Count(s, ":") > 1 {
		return a, fmt.Errorf("an IPv6 address needs brackets, as [%s]:443", s)
	} else {
		var hasPort bool
		host, portText, hasPort = strings.Cut(s, ":")
		if hasPort && portText == "" {
			return a, fmt.Errorf("empty port after the colon")
		}
	}
	if portText != "" {
		p, err := strconv.ParseUint(portText, 10, 16)
		if err != nil || p == 0 || portText[0] == '+' {
			return a, fmt.Errorf("port %q is not a number from 1 to 65535", portText)
		}
		a.Ports = []uint16{uint16(p)}
	} else {
		a.Ports = slices.Clone(defPorts)
	}
	if a.IP.IsValid() {
		return a, nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Zone() != "" {
			return a, fmt.Errorf("an address with a zone (%%) cannot be allowed")
		}
		a.IP = ip.Unmap()
		return a, nil
	}
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		a.Wildcard = true
		host = rest
		if strings.Contains(host, "*") {
			return a, fmt.Errorf("bad wildcard: only a leading \"*.\" is allowed, as *.example.com")
		}
		if strings.Count(strings.TrimSuffix(host, "."), ".") < 1 {
			return a, fmt.Errorf("wildcard *.%s is too broad: name a domain with at least two labels, as *.example.com", host)
		}
	} else if strings.Contains(host, "*") {
		return a, fmt.Errorf("bad wildcard: only a leading \"*.\" is allowed, as *.example.com")
	}
	h, err := checkHostName(host)
	if err != nil {
		return a, err
	}
	a.Host = h
	return a, nil
}

// hostOfURL returns the host[:port] of a URL-looking entry, for the hint.
func hostOfURL(s string) string {
	_, rest, _ := strings.Cut(s, "://")
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	return rest
}

// checkHostName validates a DNS host name (ASCII: letters, digits, '-' and '_'
// in labels of 1 to 63 bytes, at most 253 bytes, at least one letter in the last
// label) and returns it in lower case without a trailing dot.
func checkHostName(h string) (string, error) {
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", fmt.Errorf("empty host name")
	}
	if len(h) > 253 {
		return "", fmt.Errorf("host name longer than 253 bytes")
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" {
			return "", fmt.Errorf("empty label in host name %q", h)
		}
		if len(l) > 63 {
			return "", fmt.Errorf("label %q is longer than 63 bytes", l)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("label %q starts or ends with '-'", l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if c >= 0x80 {
				return "", fmt.Errorf("host name %q is not ASCII: write international names in their xn-- (punycode) form", h)
			}
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("host name %q has %q (letters, digits, '-', '_' and dots only)", h, string(c))
			}
		}
	}
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return "", fmt.Errorf("neither an IP address nor a host name (its last label is all digits)")
	}
	return strings.ToLower(h), nil
}

// egressRules are the network.allow and network.ssh lists of defaults: or a tool.
type egressRules struct {
	allow, ssh list[Allow]
	sshRules   // network.known_hosts, network.ssh_agent (egress_ssh.go)
	// secrets is network.secrets (secrets.go).
	secrets list[string]
}

// allowField and sshField read network.allow and network.ssh of defaults: and
// each tool (parse.go adds them to the network section).
func (d *decoder) allowField(r *egressRules) yamlnode.Field {
	return yamlnode.Field{Name: "allow", List: true, Fn: func(_, v *yaml.Node, f string, ext bool) { r.allow = d.allowList(v, f, ext, DefaultAllowPorts) }}
}

func (d *decoder) sshField(r *egressRules) yamlnode.Field {
	return yamlnode.Field{Name: "ssh", List: true, Fn: func(_, v *yaml.Node, f string, ext bool) { r.ssh = d.allowList(v, f, ext, DefaultSSHPorts) }}
}

func (d *decoder) allowList(n *yaml.Node, field string, extend bool, defPorts []uint16) list[Allow] {
	l := list[Allow]{set: true, extend: extend}
	items, _ := d.Seq(n, field)
	for i, it := range items {
		f := yamlnode.Index(field, i)
		s, ok := d.Str(it, f)
		if !ok {
			continue
		}
		as, err := ParseAllow(f, s, defPorts)
		if err != nil {
			d.Fail(yamlnode.Deref(it), f, "%v", err)
			continue
		}
		for _, a := range as {
			l.items = append(l.items, item[Allow]{v: a, n: yamlnode.Deref(it), field: f})
		}
	}
	return l
}

// egress merges a tool's egress lists over the defaults into t.Egress and checks
// them against the merged connect_tcp ports (m). parse.go calls it from buildTool.
//
// allow: and connect_tcp combine as two separate ways out: connect_tcp ports are
// reachable directly on every address (Landlock rules know ports, not hosts), the
// allow: destinations only through the proxy, whose port the runtime adds to the
// profile's Landlock rules. A port both lists use is an error, since the direct
// way would bypass the allow list for every host on that port.
func (d *decoder) egress(t *Tool, rt *rawTool, defs *rules, m *rules) {
	allow := mergeList(defs.egress.allow, rt.r.egress.allow)
	ssh := mergeList(defs.egress.ssh, rt.r.egress.ssh)
	if len(allow.items)+len(ssh.items) == 0 {
		// The defaults' secrets go with the defaults' proxy: a tool without one
		// gets none. Its own network.secrets is an error (secrets.go).
		if it := rt.r.egress.secrets.items; len(it) > 0 {
			d.Fail(it[0].n, it[0].field, "a secret goes only through the egress proxy, to hosts network.allow names, and this tool has no network.allow")
		}
		return
	}
	field := "defaults.network.allow"
	if rt.r.egress.allow.set {
		field = yamlnode.Join("tools", rt.name) + ".network.allow"
	}
	e := &Egress{Field: field, Allow: dedupAllow(allow.items), SSH: dedupAllow(ssh.items)}
	for _, l := range [][]item[Allow]{allow.items, ssh.items} {
		for _, it := range l {
			for _, c := range m.connect.items {
				if slices.Contains(it.v.Ports, c.v) {
					d.Fail(c.n, c.field, "port %d is also reached through the egress proxy by %s (%s): a direct connect_tcp port would bypass the allow list for every host on it; remove one of them (docs/network.md)", c.v, it.field, it.v.Text)
				}
			}
		}
	}
	d.egressSSH(t, rt, defs, m, e) // egress_ssh.go
	// secrets.go
	e.Secrets = d.toolSecrets(t, m, mergeList(defs.egress.secrets, rt.r.egress.secrets), allow.items)
	t.Egress = e
	t.Profile.Network.Egress = true
}

// dedupAllow drops entries whose canonical form (String) repeats, keeping the first.
func dedupAllow(items []item[Allow]) []Allow {
	var out []Allow
	seen := map[string]bool{}
	for _, it := range items {
		if k := it.v.String(); !seen[k] {
			seen[k] = true
			out = append(out, it.v)
		}
	}
	return out
}
