package ci

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/agentexec/agentexec/policy"
)

// Job is a parsed job file: a policy and the steps to run under it.
type Job struct {
	// File is the job file's name as given (errors are prefixed with it).
	File string
	// Name names the job in reports and the artifacts directory; it defaults to the
	// job file's base name without its extension.
	Name string
	// PolicyPath is the policy file as written (relative paths are relative to the job
	// file's directory); "" when the policy is inline.
	PolicyPath string
	// PolicyInline holds an inline policy as YAML text laid out so that its line and
	// column numbers are those of the job file; nil when the policy is a path.
	PolicyInline []byte
	// policyPos is where the policy: value is, for errors about it.
	policyPos *yaml.Node
	// Workspace is the workspace: field as written ("" when absent).
	Workspace    string
	workspacePos *yaml.Node
	// Env is set for every step (a step's own env wins).
	Env []EnvVar
	// Steps in file order.
	Steps []*Step
}

// EnvVar is one environment variable of a job or step, with where it is defined.
type EnvVar struct {
	Name, Value string
	Line, Col   int
}

// Step is one step of a job.
type Step struct {
	// Name is unique in the job; it names the step's artifacts.
	Name string
	// Run is an argv whose first word is a tool of the policy; Sh is a script for the
	// policy's shell tool. Exactly one is set.
	Run []string
	Sh  string
	// Cwd is the working directory, relative to the workspace ("" is the workspace).
	Cwd string
	// Env is the step's own environment, applied over the job's.
	Env []EnvVar
	// Limits are the step's limits (zero: the policy's).
	Limits StepLimits
	// ContinueOnError makes a failure of this step not fail the job; steps that need
	// it still run.
	ContinueOnError bool
	// Needs names earlier steps that must pass (or be allowed to fail) first.
	Needs []string
	// Line and Col are where the step is defined.
	Line, Col int

	// Tool and Args are the launch: Run[0], Run[1:] or the shell with -c Sh. They are
	// filled by Load (the shell's name comes from the policy).
	Tool string
	Args []string

	pos map[string]*yaml.Node
}

// StepLimits are per-step limits, each within the policy's for the step's tool.
// Timeout and Output are applied per launch; Memory, Pids and CPU are checked
// against the policy but the runtime cannot yet apply them per launch, so a step
// that sets them reports them as unenforced (the policy's limits still apply).
type StepLimits struct {
	Timeout time.Duration
	Output  int64
	Memory  int64
	Pids    int64
	CPU     float64
}

// Required reports whether the step's failure fails the job.
func (s *Step) Required() bool { return !s.ContinueOnError }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

const nameRule = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"

// Parse reads and validates a job file without touching the host. name is used in
// error messages. On failure it returns every problem it found, joined with
// errors.Join, each a *policy.FieldError (FILE:LINE:COL: FIELD: MSG).
func Parse(name string, data []byte) (j *Job, err error) {
	defer func() {
		if r := recover(); r != nil {
			j, err = nil, fmt.Errorf("ci: %s: bug: the job parser panicked (please report): %v", name, r)
		}
	}()
	d := &decoder{file: name}
	root, err := d.document(data)
	if err != nil {
		return nil, err
	}
	j = &Job{File: name, Name: defaultName(name)}
	var stepsNode *yaml.Node
	var policyKey *yaml.Node
	d.object(root, "", []fieldSpec{
		{name: "name", fn: func(_, v *yaml.Node, f string) {
			if s, ok := d.str(v, f); ok {
				if !nameRE.MatchString(s) {
					d.fail(deref(v), f, "%q is not a valid job name (%s)", s, nameRule)
				} else {
					j.Name = s
				}
			}
		}},
		{name: "policy", fn: func(k, v *yaml.Node, f string) {
			policyKey = k
			j.policyPos = deref(v)
			dv := deref(v)
			switch {
			case dv != nil && dv.Kind == yaml.ScalarNode && !isNull(dv):
				if dv.Value == "" {
					d.fail(dv, f, "empty policy path")
				}
				j.PolicyPath = dv.Value
			case dv != nil && dv.Kind == yaml.MappingNode:
				j.PolicyInline = inlineBytes(data, root, v)
			default:
				d.fail(dv, f, "expected a policy file path or an inline policy mapping, got %s", describe(dv))
			}
		}},
		{name: "workspace", fn: func(_, v *yaml.Node, f string) {
			j.workspacePos = deref(v)
			if s, ok := d.str(v, f); ok {
				if s == "" {
					d.fail(deref(v), f, "empty path (omit the field for the job file's directory)")
				}
				j.Workspace = s
			}
		}},
		{name: "env", fn: func(_, v *yaml.Node, f string) { j.Env = d.env(v, f) }},
		{name: "steps", fn: func(_, v *yaml.Node, _ string) { stepsNode = v }},
	})
	if policyKey == nil {
		d.fail(root, "policy", "missing (a policy file path, as policy: ../ci.yaml, or an inline policy mapping)")
	}
	if stepsNode == nil {
		d.fail(root, "steps", "missing (a list of steps, each with a name and run: or sh:)")
	} else {
		j.Steps = d.steps(stepsNode, "steps")
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	return j, nil
}

// defaultName is the job file's base name without its extension, made into a valid name.
func defaultName(file string) string {
	base := file
	if i := strings.LastIndexByte(base, '/'); i >= 0 {
		base = base[i+1:]
	}
	if i := strings.IndexByte(base, '.'); i > 0 {
		base = base[:i]
	}
	var b strings.Builder
	for _, r := range base {
		if r < utf8.RuneSelf && (r == '.' || r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	if !nameRE.MatchString(s) {
		return "job"
	}
	return s
}

func (d *decoder) env(n *yaml.Node, field string) []EnvVar {
	pairs, ok := d.mapping(n, field)
	if !ok {
		return nil
	}
	var out []EnvVar
	for _, p := range pairs {
		f := join(field, p.key)
		if !envNameRE.MatchString(p.key) {
			d.fail(p.k, f, "%q is not a valid environment variable name", p.key)
			continue
		}
		v := deref(p.v)
		if v == nil || v.Kind != yaml.ScalarNode {
			d.fail(v, f, "expected a string value, got %s", describe(v))
			continue
		}
		val := v.Value
		if isNull(v) {
			val = ""
		}
		if strings.IndexByte(val, 0) >= 0 {
			d.fail(v, f, "the value contains a NUL byte")
			continue
		}
		out = append(out, EnvVar{Name: p.key, Value: val, Line: p.k.Line, Col: p.k.Column})
	}
	return out
}

func (d *decoder) steps(n *yaml.Node, field string) []*Step {
	items, ok := d.seq(n, field)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		d.fail(deref(n), field, "a job needs at least one step")
		return nil
	}
	var out []*Step
	byName := map[string]*Step{}
	for i, it := range items {
		f := index(field, i)
		s := d.step(it, f)
		if s == nil {
			continue
		}
		if s.Name != "" {
			if prev, dup := byName[s.Name]; dup {
				d.fail(s.pos["name"], join(f, "name"), "duplicate step name %q (first used at line %d, column %d)", s.Name, prev.Line, prev.Col)
			}
		}
		for ni, need := range s.Needs {
			nf := index(join(f, "needs"), ni)
			pn := s.pos[nf]
			switch {
			case need == s.Name:
				d.fail(pn, nf, "a step cannot need itself")
			case byName[need] == nil:
				if later := findStep(items[i+1:], need); later {
					d.fail(pn, nf, "%q is a later step; needs may only name earlier steps (move it up)", need)
				} else {
					d.fail(pn, nf, "no step named %q", need)
				}
			}
		}
		if s.Name != "" && byName[s.Name] == nil {
			byName[s.Name] = s
		}
		out = append(out, s)
	}
	return out
}

// findStep reports whether one of the step nodes has the given name.
func findStep(items []*yaml.Node, name string) bool {
	for _, it := range items {
		it = deref(it)
		if it == nil || it.Kind != yaml.MappingNode {
			continue
		}
		for i := 0; i+1 < len(it.Content); i += 2 {
			if k, v := deref(it.Content[i]), deref(it.Content[i+1]); k != nil && k.Value == "name" && v != nil && v.Value == name {
				return true
			}
		}
	}
	return false
}

func (d *decoder) step(n *yaml.Node, field string) *Step {
	dn := deref(n)
	if dn == nil || dn.Kind != yaml.MappingNode {
		d.fail(dn, field, "expected a step (a mapping with name: and run: or sh:), got %s", describe(dn))
		return nil
	}
	s := &Step{Line: dn.Line, Col: dn.Column, pos: map[string]*yaml.Node{}}
	var haveRun, haveSh, haveTimeout bool
	d.object(dn, field, []fieldSpec{
		{name: "name", fn: func(_, v *yaml.Node, f string) {
			s.pos["name"] = deref(v)
			if str, ok := d.str(v, f); ok {
				if !nameRE.MatchString(str) {
					d.fail(deref(v), f, "%q is not a valid step name (%s)", str, nameRule)
				} else {
					s.Name = str
				}
			}
		}},
		{name: "run", fn: func(_, v *yaml.Node, f string) {
			haveRun = true
			s.pos["run"] = deref(v)
			dv := deref(v)
			if dv != nil && dv.Kind == yaml.ScalarNode && !isNull(dv) {
				d.fail(dv, f, "expected an argv list (as [go, test, ./...]), got %s; for a shell command line use sh:", describe(dv))
				return
			}
			argv, ok := d.strList(v, f)
			if !ok {
				return
			}
			if len(argv) == 0 {
				d.fail(dv, f, "empty argv: the first word names a tool of the policy")
				return
			}
			if argv[0] == "" {
				d.fail(dv.Content[0], index(f, 0), "empty tool name")
				return
			}
			s.Run = argv
		}},
		{name: "sh", fn: func(_, v *yaml.Node, f string) {
			haveSh = true
			s.pos["sh"] = deref(v)
			if str, ok := d.str(v, f); ok {
				if strings.TrimSpace(str) == "" {
					d.fail(deref(v), f, "empty script")
					return
				}
				s.Sh = str
			}
		}},
		{name: "cwd", fn: func(_, v *yaml.Node, f string) {
			s.pos["cwd"] = deref(v)
			if str, ok := d.str(v, f); ok {
				s.Cwd = str
			}
		}},
		{name: "env", fn: func(_, v *yaml.Node, f string) { s.Env = d.env(v, f) }},
		{name: "timeout", fn: func(_, v *yaml.Node, f string) {
			haveTimeout = true
			s.pos["timeout"] = deref(v)
			if t, ok := d.duration(v, f); ok {
				s.Limits.Timeout = t
			}
		}},
		{name: "limits", fn: func(_, v *yaml.Node, f string) { d.limits(s, v, f, &haveTimeout) }},
		{name: "continue_on_error", fn: func(_, v *yaml.Node, f string) {
			if b, ok := d.boolean(v, f); ok {
				s.ContinueOnError = b
			}
		}},
		{name: "needs", fn: func(_, v *yaml.Node, f string) {
			items, ok := d.seq(v, f)
			if !ok {
				return
			}
			seen := map[string]bool{}
			for i, it := range items {
				nf := index(f, i)
				str, ok := d.str(it, nf)
				if !ok {
					continue
				}
				if seen[str] {
					d.fail(deref(it), nf, "%q is listed twice", str)
					continue
				}
				seen[str] = true
				s.pos[nf] = deref(it)
				s.Needs = append(s.Needs, str)
			}
		}},
	})
	if _, ok := s.pos["name"]; !ok {
		d.fail(dn, join(field, "name"), "missing (every step needs a name)")
	}
	switch {
	case haveRun && haveSh:
		d.fail(s.pos["sh"], join(field, "sh"), "both run: and sh: are set; use one")
	case !haveRun && !haveSh:
		d.fail(dn, field, "missing run: (an argv list) or sh: (a script)")
	}
	return s
}

func (d *decoder) limits(s *Step, n *yaml.Node, field string, haveTimeout *bool) {
	d.object(n, field, []fieldSpec{
		{name: "timeout", fn: func(k, v *yaml.Node, f string) {
			if *haveTimeout {
				d.fail(k, f, "both timeout: and limits.timeout: are set; use one")
				return
			}
			*haveTimeout = true
			s.pos["timeout"] = deref(v)
			if t, ok := d.duration(v, f); ok {
				s.Limits.Timeout = t
			}
		}},
		{name: "output", fn: func(_, v *yaml.Node, f string) {
			s.pos["limits.output"] = deref(v)
			if b, ok := d.size(v, f); ok {
				s.Limits.Output = b
			}
		}},
		{name: "memory", fn: func(_, v *yaml.Node, f string) {
			s.pos["limits.memory"] = deref(v)
			if b, ok := d.size(v, f); ok {
				s.Limits.Memory = b
			}
		}},
		{name: "pids", fn: func(_, v *yaml.Node, f string) {
			s.pos["limits.pids"] = deref(v)
			dv := deref(v)
			var x int64
			if dv == nil || dv.Kind != yaml.ScalarNode || dv.Tag != "!!int" || dv.Decode(&x) != nil || x < 1 || x > 1<<22 {
				d.fail(dv, f, "expected a process count (1 to %d), got %s", 1<<22, describe(dv))
				return
			}
			s.Limits.Pids = x
		}},
		{name: "cpu", fn: func(_, v *yaml.Node, f string) {
			s.pos["limits.cpu"] = deref(v)
			dv := deref(v)
			if dv == nil || dv.Kind != yaml.ScalarNode || isNull(dv) {
				d.fail(dv, f, "expected a CPU limit (as 1.5 or 150%%), got %s", describe(dv))
				return
			}
			c, err := policy.ParseCPU(dv.Value)
			if err != nil {
				d.fail(dv, f, "%v", err)
				return
			}
			s.Limits.CPU = c
		}},
	})
}

func (d *decoder) duration(v *yaml.Node, field string) (time.Duration, bool) {
	n := deref(v)
	if n == nil || n.Kind != yaml.ScalarNode || isNull(n) {
		d.fail(n, field, "expected a duration (as 30s), got %s", describe(n))
		return 0, false
	}
	if n.Tag == "!!int" || n.Tag == "!!float" {
		d.fail(n, field, "%s is not a duration: give a unit, as %ss", n.Value, n.Value)
		return 0, false
	}
	t, err := policy.ParseDuration(n.Value)
	if err != nil {
		d.fail(n, field, "%v", err)
		return 0, false
	}
	return t, true
}

func (d *decoder) size(v *yaml.Node, field string) (int64, bool) {
	n := deref(v)
	if n == nil || n.Kind != yaml.ScalarNode || isNull(n) || (n.Tag != "!!str" && n.Tag != "!!int") {
		d.fail(n, field, "expected a size (as 512MiB), got %s", describe(n))
		return 0, false
	}
	b, err := policy.ParseSize(n.Value)
	if err != nil {
		d.fail(n, field, "%v", err)
		return 0, false
	}
	return b, true
}

// inlineBytes returns the text of the top-level policy: value, with every line
// before it blanked and the text before its first column replaced by spaces, so that
// the policy parser's line and column numbers are the job file's. When the value
// cannot be cut out that way (an alias, a flow-style job file), it is re-encoded and
// its errors name fields but not job-file lines.
func inlineBytes(data []byte, root, v *yaml.Node) []byte {
	dv := deref(v)
	var next *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i+1] == v && i+2 < len(root.Content) {
			next = root.Content[i+2]
		}
	}
	reencode := func() []byte {
		b, err := yaml.Marshal(dv)
		if err != nil {
			return nil
		}
		return b
	}
	if v.Kind == yaml.AliasNode || root.Style&yaml.FlowStyle != 0 {
		return reencode()
	}
	lines := strings.SplitAfter(string(data), "\n")
	end := len(lines)
	if next != nil {
		end = next.Line - 1
	}
	start := dv.Line - 1
	if start < 0 || start >= len(lines) || end <= start || end > len(lines) {
		return reencode()
	}
	var b strings.Builder
	for i := 0; i < start; i++ {
		b.WriteByte('\n')
	}
	first := lines[start]
	col := 1
	for i, r := range first {
		if col >= dv.Column {
			b.WriteString(first[i:])
			break
		}
		if r == '\t' {
			b.WriteByte('\t')
		} else {
			b.WriteByte(' ')
		}
		col++
	}
	for i := start + 1; i < end; i++ {
		b.WriteString(lines[i])
	}
	return []byte(b.String())
}
