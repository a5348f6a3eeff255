package agentexec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/agentexec/agentexec/internal/egress"
	"github.com/agentexec/agentexec/policy"
)

// egressCADirPattern names the directories (os.MkdirTemp, under os.TempDir) that
// hold a runtime's egress CA bundle: the system roots plus the proxy's CA
// certificate, never its key, which exists only in the proxy's memory.
const egressCADirPattern = "agentexec-egress-"

// maxSecretFile bounds what the runtime reads of a secret's file.
const maxSecretFile = 64 << 10

// egressSecrets puts in cfg the secrets the policy's tools use (network.secrets;
// docs/network.md, "Secrets"), their values read now from the runtime's own
// environment or files, and a directory of the runtime's own for the CA bundle.
// A value that cannot be read is an error naming the secret and the field, never
// the value. Without secrets it does nothing.
//
// The directory is mode 0711, owned by the runtime: tools (the runtime's tool
// identity too) can open the bundle, whose path their profiles' read rules get
// (trustEgressBundle), but neither list nor change the directory. It is not the
// private ${TMPDIR}, which tools may write (they could swap the bundle other
// launches trust). Close removes it (rt.egressDir), also when New fails.
func (rt *Runtime) egressSecrets(cfg *egress.Config) error {
	var used []*policy.Secret
	for _, s := range rt.pol.Secrets {
		if slices.ContainsFunc(rt.pol.Tools, func(t *policy.Tool) bool { return t.Egress != nil && slices.Contains(t.Egress.Secrets, s.Name) }) {
			used = append(used, s)
		}
	}
	if len(used) == 0 {
		return nil
	}
	var errs []error
	for _, s := range used {
		v, err := readSecret(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("agentexec: policy %s: %w", rt.secretWhere(s), err))
			continue
		}
		cfg.Secrets = append(cfg.Secrets, &egress.Secret{Name: s.Name, Env: s.As, Value: v, Hosts: s.Hosts})
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", egressCADirPattern)
	if err != nil {
		return fmt.Errorf("agentexec: egress CA directory: %w", err)
	}
	rt.egressDir = dir            // Close removes it, on New's failure paths too
	abs, err := filepath.Abs(dir) // $TMPDIR may be relative
	if err == nil {
		rt.egressDir = abs
		err = os.Chmod(abs, 0o711) // whatever the umask
	}
	if err != nil {
		return fmt.Errorf("agentexec: egress CA directory: %w", err)
	}
	cfg.CADir = abs
	return nil
}

// secretWhere locates a secret's source field for errors ("p.yaml:3:3: secrets.github.env").
func (rt *Runtime) secretWhere(s *policy.Secret) string {
	if s.Line > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", rt.pol.Source, s.Line, s.Col, s.SourceField())
	}
	return rt.pol.Source + ": " + s.SourceField()
}

// readSecret reads a secret's value: the variable of the runtime's environment,
// or the file without one trailing newline. Errors say what is wrong and never
// hold the value.
func readSecret(s *policy.Secret) (string, error) {
	var v string
	if s.File != "" {
		f, err := os.Open(s.File)
		if err != nil {
			return "", fmt.Errorf("cannot read the secret %s: %w", s.Name, err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
		if err != nil {
			return "", fmt.Errorf("cannot read the secret %s from %s: %w", s.Name, s.File, err)
		}
		if len(b) > maxSecretFile {
			return "", fmt.Errorf("the secret %s: %s is larger than %d bytes", s.Name, s.File, maxSecretFile)
		}
		v = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	} else {
		val, ok := os.LookupEnv(s.Env)
		if !ok {
			return "", fmt.Errorf("the secret %s: %s is not set in the runtime's environment", s.Name, s.Env)
		}
		v = val
	}
	src := s.Source() + " " + s.Env + s.File
	if v == "" {
		return "", fmt.Errorf("the secret %s is empty (%s)", s.Name, src)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return "", fmt.Errorf("the secret %s (%s) holds a control character at byte %d (a line break, NUL…): it cannot go in a request header", s.Name, src, i)
		}
	}
	return v, nil
}

// trustEgressBundle lets the profiles of the tools with secrets read the CA
// bundle that their trust variables name (a copy of the policy, as setupTmpDir
// makes one), readable by every uid whatever the umask.
func (rt *Runtime) trustEgressBundle() error {
	b := rt.egress.CABundle()
	if b == "" {
		return nil
	}
	if err := os.Chmod(b, 0o644); err != nil {
		return fmt.Errorf("agentexec: egress CA bundle: %w", err)
	}
	q, err := rt.pol.WithSecretsBundle(b)
	if err != nil {
		return fmt.Errorf("agentexec: %w", err)
	}
	rt.pol = q
	return nil
}

// SecretCheck is one secret as `agentexec check` shows it: where the value comes
// from (never the value), the variable tools see, where it may go and which
// tools get it.
type SecretCheck struct {
	Name string `json:"name"`
	// Source is "env" or "file"; Env or File names it.
	Source string `json:"source"`
	Env    string `json:"env,omitempty"`
	File   string `json:"file,omitempty"`
	// As is the variable that holds the placeholder in the tools' environment.
	As string `json:"as"`
	// Hosts are the destinations, canonical ("api.github.com:443").
	Hosts []string `json:"hosts"`
	// Tools are the tools given the secret (none: New does not read it).
	Tools []string `json:"tools"`
	// Readable says whether this process could read a usable value now; Reason
	// says why not. New reads it again (in its own environment).
	Readable bool   `json:"readable"`
	Reason   string `json:"reason,omitempty"`
}

// checkSecrets adds the policy's secrets to the report; a secret that a tool
// uses and this process cannot read is a problem (New would fail).
func (r *Report) checkSecrets(p *policy.Policy) {
	r.Egress.Secrets = nil
	for _, s := range p.Secrets {
		c := SecretCheck{Name: s.Name, Source: s.Source(), Env: s.Env, File: s.File, As: s.As, Hosts: []string{}, Tools: []string{}}
		for _, h := range s.Hosts {
			c.Hosts = append(c.Hosts, h.String())
		}
		for _, t := range p.Tools {
			if t.Egress != nil && slices.Contains(t.Egress.Secrets, s.Name) {
				c.Tools = append(c.Tools, t.Name)
			}
		}
		if _, err := readSecret(s); err != nil {
			c.Reason = err.Error()
			if len(c.Tools) > 0 {
				r.Problems = append(r.Problems, s.SourceField()+": "+c.Reason)
			}
		} else {
			c.Readable = true
		}
		r.Egress.Secrets = append(r.Egress.Secrets, c)
	}
}

// writeSecretChecks prints the secrets for people, one line each.
func writeSecretChecks(w io.Writer, cs []SecretCheck) {
	for _, c := range cs {
		tools := "no tool"
		if len(c.Tools) > 0 {
			tools = strings.Join(c.Tools, ", ")
		}
		state := "readable"
		if !c.Readable {
			state = "NOT readable: " + c.Reason
		}
		fmt.Fprintf(w, "egress secret %s: from %s %s, tools see %s (a placeholder), sent to %s, for %s; %s\n",
			c.Name, c.Source, c.Env+c.File, c.As, strings.Join(c.Hosts, ", "), tools, state)
	}
}
