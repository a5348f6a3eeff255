package policy

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"

	"github.com/agentexec/agentexec/internal/yamlnode"
)

// Secret is one entry of the policy's secrets: section (docs/network.md,
// "Secrets"): a credential the runtime reads from its own environment or a file
// and that never enters the sandbox. The tools given it (network.secrets) see only
// a placeholder in As; the egress proxy puts the value in its place in the request
// headers of HTTPS requests to Hosts, and nowhere else.
//
//	secrets:
//	  github:
//	    env: GITHUB_TOKEN        # or file: /run/secrets/github (exactly one)
//	    hosts: [api.github.com]  # names (exact or *.suffix), port 443 unless written
//	    as: GH_TOKEN             # default: the env: name; required with file:
//
// The policy holds where the value comes from, never the value: Parse reads no
// variable and no file. The runtime reads it at New (and fails there, naming the
// secret and the field, when it cannot).
type Secret struct {
	// Name is the key under secrets: ([a-z0-9_-], 1 to 64 bytes).
	Name string
	// Env is the variable of the runtime's own environment that holds the value;
	// "" when File is set.
	Env string
	// File is the absolute path of a file that holds the value (one trailing
	// newline is dropped); "" when Env is set.
	File string
	// As is the variable that holds the placeholder in the tools' environment.
	As string
	// Hosts are where the value may go: name entries (exact or wildcard, no IP
	// literals, no presets) with their ports (DefaultSecretPorts unless written).
	Hosts []Allow
	// Field is the field path of the entry ("secrets.github"); Line and Col
	// locate its key in the source.
	Field     string
	Line, Col int
}

// Source is where the runtime reads the value: "env" or "file".
func (s *Secret) Source() string {
	if s.File != "" {
		return "file"
	}
	return "env"
}

// SourceField is the field path of the source ("secrets.github.env").
func (s *Secret) SourceField() string { return s.Field + "." + s.Source() }

// DefaultSecretPorts are the ports of a secret's hosts that name none: a secret
// is substituted only in intercepted HTTPS, never in plain HTTP.
var DefaultSecretPorts = []uint16{443}

var secretNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9_-]{1,64}$`) })

// reservedSecretVars are set by the runtime for launches with egress; a secret's
// placeholder may not take their place (compared case-insensitively).
var reservedSecretVars = append([]string{
	"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "GIT_SSH_COMMAND",
	"NPM_CONFIG_PROXY", "NPM_CONFIG_HTTPS_PROXY",
}, SecretTrustVars...)

// SecretTrustVars are the variables the runtime points at its CA bundle (the
// system roots plus the egress proxy's CA) for launches with secrets
// (internal/egress sets exactly these); a tool with secrets may not set them in
// env.set. npm_config_cafile is npm's: npm passes its cafile to Node as the only
// CAs of a request, so NODE_EXTRA_CA_CERTS is ignored wherever a cafile is
// configured, as global npmrc files often do.
var SecretTrustVars = []string{"SSL_CERT_FILE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "npm_config_cafile", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CARGO_HTTP_CAINFO", "GIT_SSL_CAINFO"}

func reservedVar(name string) bool {
	return slices.ContainsFunc(reservedSecretVars, func(v string) bool { return strings.EqualFold(v, name) })
}

// Secret returns the secret with the given name.
func (p *Policy) Secret(name string) (*Secret, bool) {
	for _, s := range p.Secrets {
		if s.Name == name {
			return s, true
		}
	}
	return nil, false
}

// secretDefs reads the top-level secrets: mapping (absent: tp.V is nil).
func (d *decoder) secretDefs(tp yamlnode.Pair) []*Secret {
	d.secrets = map[string]*Secret{}
	if tp.V == nil {
		return nil
	}
	pairs, ok := d.Mapping(tp.V, "secrets")
	if !ok {
		return nil
	}
	var out []*Secret
	for _, pr := range pairs {
		f := yamlnode.Join("secrets", pr.Key)
		if !secretNameRE().MatchString(pr.Key) {
			d.Fail(pr.K, f, "%q is not a valid secret name (1 to 64 of a-z, 0-9, '_' and '-')", pr.Key)
			continue
		}
		if s := d.secretDef(pr, f); s != nil {
			out = append(out, s)
			d.secrets[s.Name] = s
		}
	}
	return out
}

func (d *decoder) secretDef(pr yamlnode.Pair, f string) *Secret {
	s := &Secret{Name: pr.Key, Field: f, Line: pr.K.Line, Col: pr.K.Column}
	var envN, fileN, asN *yaml.Node
	var hosts []item[Allow]
	hostsSet := false
	before := len(d.Errs)
	d.Object(pr.V, f, []yamlnode.Field{
		{Name: "env", Fn: func(_, v *yaml.Node, f string, _ bool) {
			if x, ok := d.Str(v, f); ok {
				envN = yamlnode.Deref(v)
				if !envNameRE().MatchString(x) {
					d.Fail(envN, f, "%q is not a variable name (letters, digits and _, not starting with a digit)", x)
				}
				s.Env = x
			}
		}},
		{Name: "file", Fn: func(_, v *yaml.Node, f string, _ bool) {
			x, ok := d.Str(v, f)
			if !ok {
				return
			}
			fileN = yamlnode.Deref(v)
			p, err := d.x.absPath(x)
			switch {
			case err != nil:
				d.Fail(fileN, f, "%v", err)
			case Beneath(p, TmpDirPlaceholder):
				d.Fail(fileN, f, "%q lies in ${TMPDIR}, a directory each runtime makes empty: the runtime reads a secret's file at start, from outside the sandbox", x)
			default:
				s.File = p
			}
		}},
		{Name: "as", Fn: func(_, v *yaml.Node, f string, _ bool) {
			if x, ok := d.Str(v, f); ok {
				asN = yamlnode.Deref(v)
				switch {
				case !envNameRE().MatchString(x):
					d.Fail(asN, f, "%q is not a variable name (letters, digits and _, not starting with a digit)", x)
				case reservedVar(x):
					d.Fail(asN, f, "%s is set by the runtime for tools with egress; name another variable for the placeholder", x)
				default:
					s.As = x
				}
			}
		}},
		{Name: "hosts", Fn: func(_, v *yaml.Node, f string, _ bool) {
			hostsSet = true
			hosts = d.secretHosts(v, f)
		}},
	})
	n := yamlnode.Deref(pr.V)
	if n == nil || n.Kind != yaml.MappingNode {
		if len(d.Errs) == before {
			d.Fail(n, f, "expected a mapping (env: or file:, hosts:, as:), got %s", yamlnode.Describe(n))
		}
		return nil
	}
	switch {
	case envN != nil && fileN != nil:
		d.Fail(fileN, f+".file", "both env: and file: are set: a secret has exactly one source")
	case envN == nil && fileN == nil && len(d.Errs) == before:
		d.Fail(n, f, "no source: set env: (a variable of the runtime's environment) or file: (an absolute path)")
	}
	if !hostsSet && len(d.Errs) == before {
		d.Fail(n, f, "hosts: is missing: list the destinations the secret may be sent to")
	} else if hostsSet && len(hosts) == 0 && len(d.Errs) == before {
		d.Fail(n, f+".hosts", "empty: a secret needs at least one destination")
	}
	if s.As == "" && asN == nil {
		if fileN != nil && len(d.Errs) == before {
			d.Fail(n, f, "as: is missing: with file: name the variable that holds the placeholder in the tools' environment")
		}
		if s.Env != "" && reservedVar(s.Env) && len(d.Errs) == before {
			d.Fail(envN, f+".env", "%s is set by the runtime for tools with egress; add as: to give the placeholder another variable", s.Env)
		}
		s.As = s.Env
	}
	if len(d.Errs) > before {
		return nil
	}
	s.Hosts = dedupAllow(hosts)
	return s
}

// secretHosts reads a secret's hosts: network.allow syntax, names only, no presets.
func (d *decoder) secretHosts(n *yaml.Node, field string) []item[Allow] {
	var out []item[Allow]
	items, _ := d.Seq(n, field)
	for i, it := range items {
		f := yamlnode.Index(field, i)
		s, ok := d.Str(it, f)
		if !ok {
			continue
		}
		if strings.HasPrefix(s, "preset:") {
			d.Fail(yamlnode.Deref(it), f, "%q: a secret's hosts are written out, not presets: a preset names hosts a credential should not all go to (raw.githubusercontent.com serves anyone's content)", s)
			continue
		}
		as, err := ParseAllow(f, s, DefaultSecretPorts)
		if err != nil {
			d.Fail(yamlnode.Deref(it), f, "%v", err)
			continue
		}
		if as[0].IP.IsValid() {
			d.Fail(yamlnode.Deref(it), f, "%q is an address: a secret goes to names only (the proxy verifies the destination's certificate for the name)", s)
			continue
		}
		out = append(out, item[Allow]{v: as[0], n: yamlnode.Deref(it), field: f})
	}
	return out
}

// secretsField reads network.secrets of defaults: and each tool (parse.go adds it
// to the network section).
func (d *decoder) secretsField(r *egressRules) yamlnode.Field {
	return yamlnode.Field{Name: "secrets", List: true, Fn: func(_, v *yaml.Node, f string, ext bool) {
		r.secrets = readList(d, v, f, ext, false, func(e element) (string, bool) { return d.Str(e.V, e.Field) })
	}}
}

// toolSecrets checks the secrets a tool is given (merged over the defaults')
// against the secrets: section, the tool's allow list and its environment, and
// returns their names in the order written, without repeats.
func (d *decoder) toolSecrets(t *Tool, m *rules, secs list[string], allow []item[Allow]) []string {
	var names []string
	seenAs := map[string]string{}
	for _, it := range secs.items {
		s := d.secrets[it.v]
		if s == nil {
			if !secretNameRE().MatchString(it.v) || len(d.secrets) == 0 {
				d.Fail(it.n, it.field, "unknown secret %q: define it under the top-level secrets: section", it.v)
			} else {
				d.Fail(it.n, it.field, "unknown secret %q (defined: %s)", it.v, strings.Join(sortedKeys(d.secrets), ", "))
			}
			continue
		}
		if slices.Contains(names, s.Name) {
			continue
		}
		for _, h := range s.Hosts {
			if !secretHostCovered(h, allow) {
				d.Fail(it.n, it.field, "secret %s may go to %s (%s), which the tool's network.allow does not name: add %q to tools.%s.network.allow, or drop the host from the secret",
					s.Name, h.String(), h.Rule, h.Text, t.Name)
			}
		}
		if other, dup := seenAs[s.As]; dup {
			d.Fail(it.n, it.field, "secrets %s and %s both put their placeholder in %s: give one of them another as:", other, s.Name, s.As)
		}
		seenAs[s.As] = s.Name
		if i := slices.IndexFunc(t.Env.Set, func(v EnvVar) bool { return v.Name == s.As }); i >= 0 {
			d.Fail(it.n, it.field, "secret %s puts its placeholder in %s, which the tool's env.set sets too: drop one of them", s.Name, s.As)
		} else if t.Env.Allowed(s.As) {
			d.Fail(it.n, it.field, "secret %s puts its placeholder in %s, which the tool's env.allow lets a request set: drop it from env.allow or give the secret another as:", s.Name, s.As)
		}
		names = append(names, s.Name)
	}
	if len(names) > 0 {
		for _, v := range m.envSet.items {
			if slices.Contains(SecretTrustVars, v.v.Name) {
				d.Fail(v.n, v.field, "tool %s has secrets, and so gets %s from the runtime (the system CA bundle plus the egress proxy's CA): drop it from env.set", t.Name, v.v.Name)
			}
		}
	}
	return names
}

// secretHostCovered reports whether every port of secret host h is allowed by a
// name entry of the tool's allow list: an exact host by an entry that matches it,
// a wildcard by a wildcard entry over the same or a parent domain.
func secretHostCovered(h Allow, allow []item[Allow]) bool {
	for _, p := range h.Ports {
		ok := false
		for _, it := range allow {
			a := it.v
			if a.IP.IsValid() || !slices.Contains(a.Ports, p) {
				continue
			}
			if h.Wildcard {
				ok = a.Wildcard && (a.Host == h.Host || strings.HasSuffix(h.Host, "."+a.Host))
			} else {
				ok = a.MatchesName(h.Host, p)
			}
			if ok {
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// WithSecretsBundle returns a copy of the policy in which the profiles of the
// tools with secrets may read bundle, the runtime's CA bundle (the system roots
// plus the egress proxy's CA) that their trust variables name. p is not changed.
func (p *Policy) WithSecretsBundle(bundle string) (*Policy, error) {
	if !filepath.IsAbs(bundle) || filepath.Clean(bundle) != bundle {
		return nil, fmt.Errorf("policy: WithSecretsBundle: %q is not an absolute, clean path", bundle)
	}
	same := func(s string) string { return s }
	q := p.rewrite(same, same)
	for _, t := range q.Tools {
		if t.Egress != nil && len(t.Egress.Secrets) > 0 && !slices.Contains(t.Profile.FS.Read, bundle) {
			t.Profile.FS.Read = sortedSet(append(t.Profile.FS.Read, bundle))
		}
	}
	return q, nil
}
