package policy

import (
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestParseAllow(t *testing.T) {
	tests := []struct {
		in   string
		want []string // canonical forms
	}{
		{"github.com", []string{"github.com:80,443"}},
		{"GitHub.COM.", []string{"github.com:80,443"}},
		{"github.com:8443", []string{"github.com:8443"}},
		{"*.example.com", []string{"*.example.com:80,443"}},
		{"*.example.com:22", []string{"*.example.com:22"}},
		{"10.0.0.5:5432", []string{"10.0.0.5:5432"}},
		{"169.254.169.254", []string{"169.254.169.254:80,443"}},
		{"[fd00:ec2::254]:80", []string{"[fd00:ec2::254]:80"}},
		{"[::ffff:127.0.0.1]", []string{"127.0.0.1:80,443"}}, // unmapped
		{"::ffff:127.0.0.1", nil},                            // IPv6 without brackets: error
		{"my_host.internal", []string{"my_host.internal:80,443"}},
		{"preset:go", []string{"proxy.golang.org:80,443", "sum.golang.org:80,443"}},
	}
	for _, tt := range tests {
		got, err := ParseAllow("r", tt.in, DefaultAllowPorts)
		if tt.want == nil {
			if err == nil {
				t.Errorf("ParseAllow(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseAllow(%q): %v", tt.in, err)
			continue
		}
		var s []string
		for _, a := range got {
			s = append(s, a.String())
			if a.Rule != "r" || a.Text != tt.in {
				t.Errorf("ParseAllow(%q): Rule %q Text %q", tt.in, a.Rule, a.Text)
			}
		}
		if !slices.Equal(s, tt.want) {
			t.Errorf("ParseAllow(%q) = %q, want %q", tt.in, s, tt.want)
		}
	}
	a, _ := ParseAllow("r", "10.1.2.3", DefaultSSHPorts)
	if !a[0].IP.Is4() || !slices.Equal(a[0].Ports, []uint16{22}) {
		t.Errorf("10.1.2.3 with ssh defaults = %+v", a[0])
	}
}

func TestParseAllowErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "empty destination"},
		{"https://github.com/x", `drop the scheme (write "github.com")`},
		{"github.com/x", "without path"},
		{"user@github.com", "without path, user"},
		{"*", "bad wildcard"},
		{"*.com", "too broad"},
		{"*github.com", "bad wildcard"},
		{"a.*.com", "bad wildcard"},
		{"*.*.example.com", "bad wildcard"},
		{"example.com:0", `port "0" is not a number from 1 to 65535`},
		{"example.com:65536", `port "65536"`},
		{"example.com:http", `port "http"`},
		{"example.com:+80", `port "+80"`},
		{"example.com:", "empty port"},
		{"fd00::1", "needs brackets"},
		{"[fd00::1", "missing ]"},
		{"[10.0.0.1]:80", "not an IPv6 address"},
		{"[fe80::1%eth0]", "not an IPv6 address"},
		{"[fd00::1]x", `unexpected "x"`},
		{"ex ample.com", "without path, user or spaces"},
		{"-bad.com", "starts or ends with '-'"},
		{"a..com", "empty label"},
		{"bücher.de", "punycode"},
		{"1.2.3", "neither an IP address nor a host name"},
		{"exa$mple.com", `has "$"`},
		{strings.Repeat("a", 64) + ".com", "longer than 63"},
		{"preset:cpan", `unknown preset "cpan" (known: crates, debian, github, go, npm, pypi)`},
	}
	for _, tt := range tests {
		_, err := ParseAllow("r", tt.in, DefaultAllowPorts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseAllow(%q) error = %v, want one containing %q", tt.in, err, tt.want)
		}
	}
}

func TestAllowMatches(t *testing.T) {
	one := func(s string) Allow {
		a, err := ParseAllow("r", s, DefaultAllowPorts)
		if err != nil || len(a) != 1 {
			t.Fatalf("ParseAllow(%q): %v", s, err)
		}
		return a[0]
	}
	names := []struct {
		rule, host string
		port       uint16
		want       bool
	}{
		{"github.com", "github.com", 443, true},
		{"github.com", "github.com", 80, true},
		{"github.com", "github.com", 22, false},
		{"github.com", "api.github.com", 443, false},
		{"github.com", "evilgithub.com", 443, false},
		{"*.github.com", "api.github.com", 443, true},
		{"*.github.com", "a.b.github.com", 443, true},
		{"*.github.com", "github.com", 443, false},      // the wildcard is strictly below
		{"*.github.com", "evil-github.com", 443, false}, // suffix without a dot boundary
		{"*.github.com", "xgithub.com", 443, false},     // same
		{"*.github.com", "api.github.com.evil.com", 443, false},
		{"github.com:8443", "github.com", 443, false},
		{"github.com:8443", "github.com", 8443, true},
		{"127.0.0.1:80", "127.0.0.1", 80, false}, // IP entries never match names
	}
	for _, tt := range names {
		if got := one(tt.rule).MatchesName(tt.host, tt.port); got != tt.want {
			t.Errorf("%s.MatchesName(%s, %d) = %v, want %v", tt.rule, tt.host, tt.port, got, tt.want)
		}
	}
	addrs := []struct {
		rule, ip string
		port     uint16
		want     bool
	}{
		{"127.0.0.1:8080", "127.0.0.1", 8080, true},
		{"127.0.0.1:8080", "::ffff:127.0.0.1", 8080, true}, // mapped form is the same address
		{"127.0.0.1:8080", "127.0.0.2", 8080, false},
		{"127.0.0.1:8080", "127.0.0.1", 8081, false},
		{"[fd00:ec2::254]", "fd00:ec2::254", 80, true},
		{"example.com", "93.184.215.14", 443, false}, // names never match addresses
	}
	for _, tt := range addrs {
		if got := one(tt.rule).MatchesAddr(netip.MustParseAddr(tt.ip), tt.port); got != tt.want {
			t.Errorf("%s.MatchesAddr(%s, %d) = %v, want %v", tt.rule, tt.ip, tt.port, got, tt.want)
		}
	}
}

func TestPolicyEgress(t *testing.T) {
	p := mustParse(t, `version: 1
defaults:
  filesystem: {read: [/usr, /etc], exec: [/usr]}
  network:
    allow: [preset:npm, github.com]
tools:
  cat: {}
  npm:
    network:
      allow+: ["*.example.com:8443", preset:npm]
      ssh: [github.com]
  offline:
    network: {allow: []}
  pg:
    network: {connect_tcp: [5432]}
`)
	cat, _ := p.Tool("cat")
	npm, _ := p.Tool("npm")
	off, _ := p.Tool("offline")
	pg, _ := p.Tool("pg")
	strs := func(l []Allow) []string {
		var s []string
		for _, a := range l {
			s = append(s, a.String())
		}
		return s
	}
	if cat.Egress == nil || cat.Egress.Field != "defaults.network.allow" ||
		!slices.Equal(strs(cat.Egress.Allow), []string{"registry.npmjs.org:80,443", "registry.yarnpkg.com:80,443", "github.com:80,443"}) {
		t.Errorf("cat.Egress = %+v", cat.Egress)
	}
	if cat.Egress.Allow[2].Rule != "defaults.network.allow[1]" || cat.Egress.Allow[0].Preset != "npm" {
		t.Errorf("cat.Egress.Allow rules = %+v", cat.Egress.Allow)
	}
	// allow+ extends the defaults; the repeated preset is de-duplicated.
	if npm.Egress == nil || npm.Egress.Field != "tools.npm.network.allow" ||
		!slices.Equal(strs(npm.Egress.Allow), []string{"registry.npmjs.org:80,443", "registry.yarnpkg.com:80,443", "github.com:80,443", "*.example.com:8443"}) ||
		!slices.Equal(strs(npm.Egress.SSH), []string{"github.com:22"}) {
		t.Errorf("npm.Egress = %+v", npm.Egress)
	}
	if off.Egress != nil || off.Profile.Network.Egress {
		t.Errorf("offline: allow: [] should leave no egress, got %+v", off.Egress)
	}
	// connect_tcp on another port combines with the inherited allow list.
	if pg.Egress == nil || !slices.Equal(pg.Profile.Network.ConnectTCP, []uint16{5432}) {
		t.Errorf("pg = %+v / %+v", pg.Egress, pg.Profile.Network)
	}
	// Profiles: egress splits profiles; cat and npm share one (the allow lists are
	// per tool, not per profile).
	if !cat.Profile.Network.Egress || cat.Profile != npm.Profile || cat.Profile.Name != "default" || off.Profile == cat.Profile {
		t.Errorf("profiles: cat %q npm %q offline %q", cat.Profile.Name, npm.Profile.Name, off.Profile.Name)
	}
}

func TestPolicyEgressErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string
	}{
		{"bad entries", base + "  curl:\n    network:\n      allow: [\"https://x.org\", \"*x.org\", \"x.org:0\", 7, preset:nope]\n",
			[]string{
				`p.yaml:10:15: tools.curl.network.allow[0]: "https://x.org": a destination is a host with an optional port, not a URL: drop the scheme (write "x.org")`,
				`p.yaml:10:32: tools.curl.network.allow[1]: "*x.org": bad wildcard: only a leading "*." is allowed, as *.example.com`,
				`p.yaml:10:42: tools.curl.network.allow[2]: "x.org:0": port "0" is not a number from 1 to 65535`,
				`p.yaml:10:53: tools.curl.network.allow[3]: "7": neither an IP address nor a host name (its last label is all digits)`,
				`p.yaml:10:56: tools.curl.network.allow[4]: "preset:nope": unknown preset "nope" (known: crates, debian, github, go, npm, pypi)`,
			}},
		{"not a list", base + "  curl:\n    network: {allow: github.com}\n",
			[]string{`p.yaml:9:22: tools.curl.network.allow: expected a list, got "github.com"`}},
		{"unknown field", base + "  curl:\n    network: {alow: [github.com]}\n",
			[]string{`p.yaml:9:15: tools.curl.network.alow: unknown field "alow" (did you mean "allow"?)`}},
		{"duplicate key", base + "  curl:\n    network:\n      allow: [a.org]\n      allow: [b.org]\n",
			[]string{`p.yaml:11:7: tools.curl.network.allow: duplicate key "allow" (first defined at line 10, column 7)`}},
		{"allow and allow+", base + "  curl:\n    network: {allow: [a.org], allow+: [b.org]}\n",
			[]string{`p.yaml:9:31: tools.curl.network.allow+: both allow and allow+ are set; use one`}},
		{"allow+ in defaults", "version: 1\ndefaults:\n  network: {allow+: [a.org]}\ntools: {cat: {}}\n",
			[]string{`p.yaml:3:13: defaults.network.allow+: allow+ extends the defaults, which only a tool can do; write allow`}},
		{"connect_tcp port also allowed", base + "  curl:\n    network: {connect_tcp: [443], allow: [a.org]}\n",
			[]string{`p.yaml:9:29: tools.curl.network.connect_tcp[0]: port 443 is also reached through the egress proxy by tools.curl.network.allow[0] (a.org): a direct connect_tcp port would bypass the allow list for every host on it; remove one of them (docs/network.md)`}},
		{"connect_tcp port also ssh", base + "  git:\n    network: {connect_tcp: [22], ssh: [github.com]}\n",
			[]string{`p.yaml:9:29: tools.git.network.connect_tcp[0]: port 22 is also reached through the egress proxy by tools.git.network.ssh[0] (github.com): a direct connect_tcp port would bypass the allow list for every host on it; remove one of them (docs/network.md)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tt.src), testOpts)
			var got []string
			for _, e := range unjoin(err) {
				got = append(got, e.Error())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for _, e := range unjoin(err) {
				var fe *FieldError
				if !errors.As(e, &fe) || fe.Line == 0 {
					t.Errorf("%v is not a located *FieldError", e)
				}
			}
		})
	}
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// TestPresetsDocumented keeps docs/network.md's preset table equal to Presets.
func TestPresetsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/network.md")
	if err != nil {
		t.Fatalf("reading the egress docs: %v", err)
	}
	for _, name := range PresetNames() {
		var quoted []string
		for _, h := range Presets[name] {
			quoted = append(quoted, "`"+h+"`")
		}
		row := "| `preset:" + name + "` | " + strings.Join(quoted, ", ") + " |"
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/network.md lacks the row\n%s", row)
		}
	}
}

// FuzzParseAllow checks that ParseAllow never panics and that what it accepts
// round-trips through String.
func FuzzParseAllow(f *testing.F) {
	for _, s := range []string{"github.com", "*.example.com:8443", "[fd00::1]:80", "10.0.0.1", "preset:go",
		"https://x", "*.com", "a..b", "[::ffff:1.2.3.4]", "x:0", "é.com", "*", ":80", "[]", "[:]:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		as, err := ParseAllow("r", s, DefaultAllowPorts)
		if err != nil {
			return
		}
		for _, a := range as {
			if a.Preset != "" || len(a.Ports) != 1 {
				continue
			}
			again, err := ParseAllow("r", a.String(), nil)
			if err != nil || len(again) != 1 || again[0].String() != a.String() {
				t.Fatalf("%q → %q does not round-trip: %v %v", s, a.String(), again, err)
			}
		}
	})
}
