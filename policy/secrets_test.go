package policy

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestPolicySecrets(t *testing.T) {
	p := mustParse(t, `version: 1
secrets:
  github:
    env: GITHUB_TOKEN
    hosts: [api.github.com, "*.ghe.example.com:8443", API.GitHub.com]
  apikey:
    file: ${HOME}/.config/key
    hosts: [api.example.com]
    as: API_KEY
  unused:
    env: UNUSED
    hosts: [x.org]
defaults:
  filesystem: {read: [/usr], exec: [/usr]}
  network:
    allow: [api.github.com, "*.example.com:8443"]
    secrets: [github]
tools:
  gh: {}
  both:
    network:
      allow+: [api.example.com]
      secrets+: [apikey, github]
  none:
    network: {secrets: []}
  offline:
    network: {allow: []}
`)
	if len(p.Secrets) != 3 {
		t.Fatalf("Secrets = %+v", p.Secrets)
	}
	gh, key := p.Secrets[0], p.Secrets[1]
	var hosts []string
	for _, h := range gh.Hosts {
		hosts = append(hosts, h.String())
	}
	if gh.Name != "github" || gh.Env != "GITHUB_TOKEN" || gh.File != "" || gh.As != "GITHUB_TOKEN" || gh.Source() != "env" ||
		gh.SourceField() != "secrets.github.env" || gh.Line != 3 || gh.Col != 3 {
		t.Errorf("github = %+v", gh)
	}
	// Port 443 only by default; the repeated host (other case) is dropped.
	if !slices.Equal(hosts, []string{"api.github.com:443", "*.ghe.example.com:8443"}) || gh.Hosts[1].Rule != "secrets.github.hosts[1]" {
		t.Errorf("github hosts = %q (%+v)", hosts, gh.Hosts)
	}
	if key.File != "/home/u/.config/key" || key.Env != "" || key.As != "API_KEY" || key.Source() != "file" {
		t.Errorf("apikey = %+v", key)
	}
	if s, ok := p.Secret("unused"); !ok || s.As != "UNUSED" {
		t.Errorf("Secret(unused) = %+v, %v", s, ok)
	}
	tool := func(name string) *Tool {
		tl, ok := p.Tool(name)
		if !ok {
			t.Fatalf("no tool %s", name)
		}
		return tl
	}
	if got := tool("gh").Egress.Secrets; !slices.Equal(got, []string{"github"}) {
		t.Errorf("gh secrets = %q, want the defaults'", got)
	}
	if got := tool("both").Egress.Secrets; !slices.Equal(got, []string{"github", "apikey"}) {
		t.Errorf("both secrets = %q, want the defaults' then its own, without repeats", got)
	}
	if got := tool("none").Egress.Secrets; len(got) != 0 {
		t.Errorf("none secrets = %q, want none (secrets: [])", got)
	}
	// A tool without a proxy gets none of the defaults' secrets.
	if e := tool("offline").Egress; e != nil {
		t.Errorf("offline egress = %+v", e)
	}
	// Secrets do not split profiles: the allow lists and secrets are per launch.
	if tool("gh").Profile != tool("none").Profile {
		t.Errorf("profiles: gh %s none %s", tool("gh").Profile.Name, tool("none").Profile.Name)
	}

	// WithSecretsBundle: a copy whose profiles with secrets read the bundle.
	p2 := mustParse(t, `version: 1
secrets:
  github: {env: GITHUB_TOKEN, hosts: [api.github.com]}
defaults:
  filesystem: {read: [/usr], exec: [/usr]}
tools:
  gh:
    network: {allow: [api.github.com], secrets: [github]}
  curl:
    filesystem: {read: [/etc]}
    network: {allow: [api.github.com]}
  cat: {}
`)
	const bundle = "/tmp/agentexec-egress-1/egress-ca-bundle.pem"
	q, err := p2.WithSecretsBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range p2.Tools {
		if slices.Contains(tl.Profile.FS.Read, bundle) {
			t.Errorf("WithSecretsBundle changed the original policy (%s)", tl.Name)
		}
	}
	for _, tl := range q.Tools {
		if got, want := slices.Contains(tl.Profile.FS.Read, bundle), tl.Name == "gh"; got != want {
			t.Errorf("%s reads the bundle: %v, want %v (%q)", tl.Name, got, want, tl.Profile.FS.Read)
		}
	}
	if _, err := p2.WithSecretsBundle("rel/bundle.pem"); err == nil {
		t.Error("WithSecretsBundle took a relative path")
	}
}

// TestPolicySecretsErrors: every malformed secrets: section and network.secrets
// list gives exactly the expected problems, located by line and column.
func TestPolicySecretsErrors(t *testing.T) {
	const defs = "version: 1\ndefaults:\n  filesystem: {read: [/usr], exec: [/usr]}\n"
	// gh is a valid secret at lines 3-5; tools start at line 10 (key), 11.
	const gh = "version: 1\nsecrets:\n  github:\n    env: GITHUB_TOKEN\n    hosts: [api.github.com]\n" +
		"defaults:\n  filesystem: {read: [/usr], exec: [/usr]}\n  env: {allow: [LC_*]}\ntools:\n"
	tests := []struct {
		name, src string
		want      []string
	}{
		{"not a mapping", defs + "secrets: [github]\ntools: {cat: {}}\n",
			[]string{`p.yaml:4:10: secrets: expected a mapping, got a list`}},
		{"bad name", defs + "secrets:\n  GitHub: {env: T, hosts: [a.org]}\ntools: {cat: {}}\n",
			[]string{`p.yaml:5:3: secrets.GitHub: "GitHub" is not a valid secret name (1 to 64 of a-z, 0-9, '_' and '-')`}},
		{"duplicate name", defs + "secrets:\n  gh: {env: T, hosts: [a.org]}\n  gh: {env: U, hosts: [a.org]}\ntools: {cat: {}}\n",
			[]string{`p.yaml:6:3: secrets.gh: duplicate key "gh" (first defined at line 5, column 3)`}},
		{"not an object", defs + "secrets:\n  gh: GITHUB_TOKEN\ntools: {cat: {}}\n",
			[]string{`p.yaml:5:7: secrets.gh: expected a mapping, got "GITHUB_TOKEN"`}},
		{"unknown field", defs + "secrets:\n  gh: {env: T, host: [a.org]}\ntools: {cat: {}}\n",
			[]string{`p.yaml:5:16: secrets.gh.host: unknown field "host" (did you mean "hosts"?)`}},
		{"duplicate field", defs + "secrets:\n  gh:\n    env: T\n    env: U\n    hosts: [a.org]\ntools: {cat: {}}\n",
			[]string{`p.yaml:7:5: secrets.gh.env: duplicate key "env" (first defined at line 6, column 5)`}},
		{"both env and file", defs + "secrets:\n  gh: {env: T, file: /run/t, as: T, hosts: [a.org]}\ntools: {cat: {}}\n",
			[]string{`p.yaml:5:22: secrets.gh.file: both env: and file: are set: a secret has exactly one source`}},
		{"neither env nor file", defs + "secrets:\n  gh: {as: T, hosts: [a.org]}\ntools: {cat: {}}\n",
			[]string{`p.yaml:5:7: secrets.gh: no source: set env: (a variable of the runtime's environment) or file: (an absolute path)`}},
		{"relative file", defs + "secrets:\n  gh: {file: run/t, as: T, hosts: [a.org]}\ntools: {cat: {}}\n",
			[]string{`p.yaml:5:14: secrets.gh.file: "run/t" is not an absolute path`}},
		{"file without as", defs + "secrets:\n  gh: {file: /run/t, hosts: [a.org]}\ntools: {cat: {}}\n",
			[]string{`p.yaml:5:7: secrets.gh: as: is missing: with file: name the variable that holds the placeholder in the tools' environment`}},
		{"bad env and as names", defs + "secrets:\n  gh: {env: 1T, hosts: [a.org]}\n  k: {env: T, as: A-B, hosts: [a.org]}\ntools: {cat: {}}\n",
			[]string{
				`p.yaml:5:13: secrets.gh.env: "1T" is not a variable name (letters, digits and _, not starting with a digit)`,
				`p.yaml:6:19: secrets.k.as: "A-B" is not a variable name (letters, digits and _, not starting with a digit)`,
			}},
		{"reserved variables", defs + "secrets:\n  a: {env: T, as: SSL_CERT_FILE, hosts: [a.org]}\n  b: {env: https_proxy, hosts: [a.org]}\ntools: {cat: {}}\n",
			[]string{
				`p.yaml:5:19: secrets.a.as: SSL_CERT_FILE is set by the runtime for tools with egress; name another variable for the placeholder`,
				`p.yaml:6:12: secrets.b.env: https_proxy is set by the runtime for tools with egress; add as: to give the placeholder another variable`,
			}},
		{"hosts missing or empty", defs + "secrets:\n  a: {env: T}\n  b: {env: T, hosts: []}\ntools: {cat: {}}\n",
			[]string{
				`p.yaml:5:6: secrets.a: hosts: is missing: list the destinations the secret may be sent to`,
				`p.yaml:6:6: secrets.b.hosts: empty: a secret needs at least one destination`,
			}},
		{"bad hosts", defs + "secrets:\n  a: {env: T, hosts: [10.0.0.1, \"preset:github\", \"https://a.org\", \"*.com\", \"a.org:0\"]}\ntools: {cat: {}}\n",
			[]string{
				`p.yaml:5:23: secrets.a.hosts[0]: "10.0.0.1" is an address: a secret goes to names only (the proxy verifies the destination's certificate for the name)`,
				`p.yaml:5:33: secrets.a.hosts[1]: "preset:github": a secret's hosts are written out, not presets: a preset names hosts a credential should not all go to (raw.githubusercontent.com serves anyone's content)`,
				`p.yaml:5:50: secrets.a.hosts[2]: "https://a.org": a destination is a host with an optional port, not a URL: drop the scheme (write "a.org")`,
				`p.yaml:5:67: secrets.a.hosts[3]: "*.com": wildcard *.com is too broad: name a domain with at least two labels, as *.example.com`,
				`p.yaml:5:76: secrets.a.hosts[4]: "a.org:0": port "0" is not a number from 1 to 65535`,
			}},
		{"unknown secret", gh + "  gh:\n    network: {allow: [api.github.com], secrets: [github, gitlab]}\n",
			[]string{`p.yaml:11:58: tools.gh.network.secrets[1]: unknown secret "gitlab" (defined: github)`}},
		{"unknown secret, no section", defs + "tools:\n  gh:\n    network: {allow: [api.github.com], secrets: [github]}\n",
			[]string{`p.yaml:6:50: tools.gh.network.secrets[0]: unknown secret "github": define it under the top-level secrets: section`}},
		{"host not in the allow list", gh + "  gh:\n    network: {allow: [github.com, \"api.github.com:8443\"], secrets: [github]}\n",
			[]string{`p.yaml:11:69: tools.gh.network.secrets[0]: secret github may go to api.github.com:443 (secrets.github.hosts[0]), which the tool's network.allow does not name: add "api.github.com" to tools.gh.network.allow, or drop the host from the secret`}},
		{"host only in the defaults' replaced list", "version: 1\nsecrets:\n  github: {env: T, hosts: [api.github.com]}\n" +
			"defaults:\n  filesystem: {read: [/usr], exec: [/usr]}\n  network: {allow: [api.github.com], secrets: [github]}\n" +
			"tools:\n  gh: {}\n  other:\n    network: {allow: [x.org]}\n",
			[]string{`p.yaml:6:48: defaults.network.secrets[0]: secret github may go to api.github.com:443 (secrets.github.hosts[0]), which the tool's network.allow does not name: add "api.github.com" to tools.other.network.allow, or drop the host from the secret`}},
		{"wildcard host needs a wildcard entry", "version: 1\nsecrets:\n  k: {env: T, hosts: [\"*.api.example.com\"]}\n" +
			"defaults:\n  filesystem: {read: [/usr], exec: [/usr]}\ntools:\n  a:\n    network: {allow: [x.api.example.com], secrets: [k]}\n" +
			"  b:\n    network: {allow: [\"*.example.com\"], secrets: [k]}\n",
			[]string{`p.yaml:8:53: tools.a.network.secrets[0]: secret k may go to *.api.example.com:443 (secrets.k.hosts[0]), which the tool's network.allow does not name: add "*.api.example.com" to tools.a.network.allow, or drop the host from the secret`}},
		{"secrets without allow", gh + "  gh:\n    network: {secrets: [github]}\n",
			[]string{`p.yaml:11:25: tools.gh.network.secrets[0]: a secret goes only through the egress proxy, to hosts network.allow names, and this tool has no network.allow`}},
		{"placeholder variable set by env.set", gh + "  gh:\n    network: {allow: [api.github.com], secrets: [github]}\n    env: {set: {GITHUB_TOKEN: x}}\n",
			[]string{`p.yaml:11:50: tools.gh.network.secrets[0]: secret github puts its placeholder in GITHUB_TOKEN, which the tool's env.set sets too: drop one of them`}},
		{"placeholder variable in env.allow", gh + "  gh:\n    network: {allow: [api.github.com], secrets: [github]}\n    env: {allow+: [\"GITHUB_*\"]}\n",
			[]string{`p.yaml:11:50: tools.gh.network.secrets[0]: secret github puts its placeholder in GITHUB_TOKEN, which the tool's env.allow lets a request set: drop it from env.allow or give the secret another as:`}},
		{"two placeholders in one variable", "version: 1\nsecrets:\n  a: {env: T, hosts: [a.org]}\n  b: {file: /run/b, as: T, hosts: [a.org]}\n" +
			"defaults:\n  filesystem: {read: [/usr], exec: [/usr]}\ntools:\n  t:\n    network: {allow: [a.org], secrets: [a, b]}\n",
			[]string{`p.yaml:9:44: tools.t.network.secrets[1]: secrets a and b both put their placeholder in T: give one of them another as:`}},
		{"trust variable in env.set", gh + "  gh:\n    network: {allow: [api.github.com], secrets: [github]}\n    env: {set: {SSL_CERT_FILE: /etc/ca.pem}}\n",
			[]string{`p.yaml:12:32: tools.gh.env.set.SSL_CERT_FILE: tool gh has secrets, and so gets SSL_CERT_FILE from the runtime (the system CA bundle plus the egress proxy's CA): drop it from env.set`}},
		{"npm's trust variable in env.set", gh + "  gh:\n    network: {allow: [api.github.com], secrets: [github]}\n    env: {set: {npm_config_cafile: /etc/ca.pem}}\n",
			[]string{`p.yaml:12:36: tools.gh.env.set.npm_config_cafile: tool gh has secrets, and so gets npm_config_cafile from the runtime (the system CA bundle plus the egress proxy's CA): drop it from env.set`}},
		{"secrets+ in defaults", defs[:len(defs)-1] + "\n  network: {allow: [a.org], secrets+: [x]}\ntools: {cat: {}}\n",
			[]string{`p.yaml:4:29: defaults.network.secrets+: secrets+ extends the defaults, which only a tool can do; write secrets`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tt.src), testOpts)
			var got []string
			for _, e := range unjoin(err) {
				got = append(got, e.Error())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s\n--- policy:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"), tt.src)
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

// TestSecretsDocExample keeps the example of docs/network.md's "Secrets in the
// policy" section valid.
func TestSecretsDocExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/network.md")
	if err != nil {
		t.Fatalf("reading the egress docs: %v", err)
	}
	_, sec, ok := strings.Cut(string(doc), "## Secrets in the policy")
	_, block, ok2 := strings.Cut(sec, "```yaml\n")
	block, _, ok3 := strings.Cut(block, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/network.md has no yaml example under \"Secrets in the policy\"")
	}
	p := mustParse(t, "version: 1\n"+block)
	gh, _ := p.Tool("gh")
	curl, _ := p.Tool("curl")
	if !slices.Equal(gh.Egress.Secrets, []string{"github"}) || !slices.Equal(curl.Egress.Secrets, []string{"registry"}) {
		t.Errorf("gh %q, curl %q", gh.Egress.Secrets, curl.Egress.Secrets)
	}
}
