package ci

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/agentexec/agentexec/internal/yamlnode"
	"github.com/agentexec/agentexec/policy"
)

// LoadOptions carry what a job's policy expansions depend on.
type LoadOptions struct {
	// Workspace overrides the job file's workspace: (relative to the current
	// directory). "" uses the job file's field, or the job file's directory.
	Workspace string
	// Home, TmpDir and CPUs are passed to the policy (empty: from the host; an
	// empty TmpDir makes ${TMPDIR} a directory private to the job's runtime).
	Home, TmpDir string
	CPUs         int
}

// Load reads a job file, parses it, loads and resolves its policy (a path relative
// to the job file, or inline) with the job's workspace as ${WORKSPACE}, and checks
// the steps against the policy: an sh: step needs the policy's shell, and step
// limits must lie within the policy's. Every problem is a *policy.FieldError
// (joined); I/O errors are wrapped.
func Load(file string, opts LoadOptions) (*Job, *policy.Policy, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("job file: %w", err)
	}
	j, err := Parse(file, data)
	if err != nil {
		return nil, nil, err
	}
	ws, err := j.workspace(opts.Workspace)
	if err != nil {
		return j, nil, err
	}
	// LoadBytes fills the empty options from the host, then parses and resolves. A
	// parse error leaves no policy; a resolve error (a required tool unusable)
	// leaves a usable one, still checked against the steps.
	popts := policy.Options{Workspace: ws, Home: opts.Home, TmpDir: opts.TmpDir, CPUs: opts.CPUs}
	d := &decoder{Decoder: yamlnode.Decoder{File: file}}
	var pol *policy.Policy
	if j.PolicyInline != nil {
		p, err := policy.LoadBytes(file, j.PolicyInline, popts)
		if p == nil {
			err = prefixFields(err, "policy") // parse errors only, not resolve errors
		}
		d.add(err)
		pol = p
	} else {
		pf := j.PolicyPath
		if !filepath.IsAbs(pf) {
			pf = filepath.Join(filepath.Dir(file), pf)
		}
		pdata, err := os.ReadFile(pf)
		if err != nil {
			d.Fail(j.policyPos, "policy", "%v", err)
		} else {
			p, err := policy.LoadBytes(pf, pdata, popts)
			d.add(err)
			pol = p
		}
	}
	if pol != nil {
		j.check(d, pol)
	}
	if err := d.Err(); err != nil {
		return j, nil, err
	}
	return j, pol, nil
}

// workspace returns the absolute workspace: the override, the workspace: field
// (relative to the job file) or the job file's directory. It must be a directory.
func (j *Job) workspace(override string) (string, error) {
	var ws string
	switch {
	case override != "":
		ws = override
	case j.Workspace != "":
		ws = j.Workspace
		if !filepath.IsAbs(ws) {
			ws = filepath.Join(filepath.Dir(j.File), ws)
		}
	default:
		ws = filepath.Dir(j.File)
	}
	abs, err := filepath.Abs(ws)
	if err != nil {
		return "", fmt.Errorf("workspace %q: %w", ws, err)
	}
	fe := &policy.FieldError{File: j.File, Field: "workspace"}
	if override != "" {
		fe.Field = "--workspace"
	} else if j.workspacePos != nil {
		fe.Line, fe.Col = j.workspacePos.Line, j.workspacePos.Column
	}
	st, err := os.Stat(abs)
	switch {
	case err != nil:
		fe.Msg, fe.Err = err.Error(), err
		return "", fe
	case !st.IsDir():
		fe.Msg = fmt.Sprintf("%s is not a directory", abs)
		return "", fe
	}
	return abs, nil
}

// prefixFields puts "policy." before the field of every FieldError of an inline policy.
func prefixFields(err error, prefix string) error {
	var out []error
	for _, e := range flatten(err) {
		var fe *policy.FieldError
		if errors.As(e, &fe) {
			c := *fe
			c.Field = yamlnode.Join(prefix, fe.Field)
			out = append(out, &c)
		} else {
			out = append(out, e)
		}
	}
	return errors.Join(out...)
}

// check fills each step's launch from the policy and checks its limits and cwd.
// A tool the policy does not know is not an error here: the launch is refused at run
// time and the step reported as denied, with the rule.
func (j *Job) check(d *decoder, pol *policy.Policy) {
	for i, s := range j.Steps {
		f := yamlnode.Index("steps", i)
		if s.Sh != "" {
			if pol.Shell == "" {
				d.Fail(s.pos["sh"], yamlnode.Join(f, "sh"), "the policy has no shell: tool to run scripts with (set shell: in the policy, or use run:)")
				continue
			}
			s.Tool, s.Args = pol.Shell, []string{"-c", s.Sh}
		} else if len(s.Run) > 0 {
			s.Tool, s.Args = s.Run[0], s.Run[1:]
		}
		if s.Cwd != "" {
			c := s.Cwd
			if !filepath.IsAbs(c) {
				c = filepath.Join(pol.Workspace, c)
			}
			if !policy.Beneath(filepath.Clean(c), pol.Workspace) {
				d.Fail(s.pos["cwd"], yamlnode.Join(f, "cwd"), "%q is outside the workspace %s", s.Cwd, pol.Workspace)
			}
		}
		t, ok := pol.Tool(s.Tool)
		if !ok {
			continue
		}
		l := s.Limits
		lim := t.Profile.Limits
		within := func(key string, set bool, over bool, have, want string) {
			if set && over {
				d.Fail(s.pos[key], yamlnode.Join(f, key), "%s exceeds the policy's limit for tool %s (%s)", have, t.Name, want)
			}
		}
		within("timeout", l.Timeout > 0, t.Timeout > 0 && l.Timeout > t.Timeout, l.Timeout.String(), t.Timeout.String())
		within("limits.output", l.Output > 0, t.OutputBytes > 0 && l.Output > t.OutputBytes, fmtBytes(l.Output), fmtBytes(t.OutputBytes))
		within("limits.memory", l.Memory > 0, lim.Memory > 0 && l.Memory > lim.Memory, fmtBytes(l.Memory), fmtBytes(lim.Memory))
		within("limits.pids", l.Pids > 0, lim.Pids > 0 && l.Pids > lim.Pids, fmt.Sprint(l.Pids), fmt.Sprint(lim.Pids))
		within("limits.cpu", l.CPU > 0, lim.CPU > 0 && l.CPU > lim.CPU, fmt.Sprintf("%g cores", l.CPU), fmt.Sprintf("%g cores", lim.CPU))
	}
}

// fmtBytes formats a byte count with a binary unit.
func fmtBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTP"[exp])
}
