package ci

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/agentexec/agentexec/internal/yamlnode"
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
// All are applied per launch: Timeout and Output as the request's, Memory, Pids and
// CPU as its Limits (see agentexec.Request.Limits). A limit the host cannot enforce
// is listed in the step's Unenforced under `cgroup: best_effort`, and fails the
// launch under `cgroup: require`.
type StepLimits struct {
	Timeout time.Duration
	Output  int64
	Memory  int64
	Pids    int64
	CPU     float64
}

// Required reports whether the step's failure fails the job.
func (s *Step) Required() bool { return !s.ContinueOnError }

var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`) })
var envNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`) })

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
	d := &decoder{Decoder: yamlnode.Decoder{File: name}}
	root, err := d.document(data)
	if err != nil {
		return nil, err
	}
	j = &Job{File: name, Name: defaultName(name)}
	var stepsNode *yaml.Node
	var policyKey *yaml.Node
	d.Object(root, "", []yamlnode.Field{
		{Name: "name", Fn: func(_, v *yaml.Node, f string, _ bool) {
			if s, ok := d.name(v, f, "job"); ok {
				j.Name = s
			}
		}},
		{Name: "policy", Fn: func(k, v *yaml.Node, f string, _ bool) {
			policyKey = k
			j.policyPos = yamlnode.Deref(v)
			dv := yamlnode.Deref(v)
			switch {
			case dv != nil && dv.Kind == yaml.ScalarNode && !yamlnode.IsNull(dv):
				if dv.Value == "" {
					d.Fail(dv, f, "empty policy path")
				}
				j.PolicyPath = dv.Value
			case dv != nil && dv.Kind == yaml.MappingNode:
				j.PolicyInline = inlineBytes(data, root, v)
			default:
				d.Fail(dv, f, "expected a policy file path or an inline policy mapping, got %s", yamlnode.Describe(dv))
			}
		}},
		{Name: "workspace", Fn: func(_, v *yaml.Node, f string, _ bool) {
			j.workspacePos = yamlnode.Deref(v)
			if s, ok := d.Str(v, f); ok {
				if s == "" {
					d.Fail(yamlnode.Deref(v), f, "empty path (omit the field for the job file's directory)")
				}
				j.Workspace = s
			}
		}},
		{Name: "env", Fn: func(_, v *yaml.Node, f string, _ bool) { j.Env = d.env(v, f) }},
		{Name: "steps", Fn: func(_, v *yaml.Node, _ string, _ bool) { stepsNode = v }},
	})
	if policyKey == nil {
		d.Fail(root, "policy", "missing (a policy file path, as policy: ../ci.yaml, or an inline policy mapping)")
	}
	if stepsNode == nil {
		d.Fail(root, "steps", "missing (a list of steps, each with a name and run: or sh:)")
	} else {
		j.Steps = d.steps(stepsNode, "steps")
	}
	if err := d.Err(); err != nil {
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
	if !nameRE().MatchString(s) {
		return "job"
	}
	return s
}

// name reads a job or step name (what), failing with the rule when it is not valid.
func (d *decoder) name(v *yaml.Node, field, what string) (string, bool) {
	s, ok := d.Str(v, field)
	if ok && !nameRE().MatchString(s) {
		d.Fail(yamlnode.Deref(v), field, "%q is not a valid %s name (%s)", s, what, nameRule)
		return "", false
	}
	return s, ok
}

func (d *decoder) env(n *yaml.Node, field string) []EnvVar {
	pairs, ok := d.Mapping(n, field)
	if !ok {
		return nil
	}
	var out []EnvVar
	for _, p := range pairs {
		f := yamlnode.Join(field, p.Key)
		if !envNameRE().MatchString(p.Key) {
			d.Fail(p.K, f, "%q is not a valid environment variable name", p.Key)
			continue
		}
		v := yamlnode.Deref(p.V)
		if v == nil || v.Kind != yaml.ScalarNode {
			d.Fail(v, f, "expected a string value, got %s", yamlnode.Describe(v))
			continue
		}
		val := v.Value
		if yamlnode.IsNull(v) {
			val = ""
		}
		if strings.IndexByte(val, 0) >= 0 {
			d.Fail(v, f, "the value contains a NUL byte")
			continue
		}
		out = append(out, EnvVar{Name: p.Key, Value: val, Line: p.K.Line, Col: p.K.Column})
	}
	return out
}

func (d *decoder) steps(n *yaml.Node, field string) []*Step {
	items, ok := d.Seq(n, field)
	if !ok {
		return nil
	}
	if len(items) == 0 {
		d.Fail(yamlnode.Deref(n), field, "a job needs at least one step")
		return nil
	}
	var out []*Step
	byName := map[string]*Step{}
	for i, it := range items {
		f := yamlnode.Index(field, i)
		s := d.step(it, f)
		if s == nil {
			continue
		}
		if s.Name != "" {
			if prev, dup := byName[s.Name]; dup {
				d.Fail(s.pos["name"], yamlnode.Join(f, "name"), "duplicate step name %q (first used at line %d, column %d)", s.Name, prev.Line, prev.Col)
			}
		}
		for ni, need := range s.Needs {
			nf := yamlnode.Index(yamlnode.Join(f, "needs"), ni)
			pn := s.pos[nf]
			switch {
			case need == s.Name:
				d.Fail(pn, nf, "a step cannot need itself")
			case byName[need] == nil:
				if later := findStep(items[i+1:], need); later {
					d.Fail(pn, nf, "%q is a later step; needs may only name earlier steps (move it up)", need)
				} else {
					d.Fail(pn, nf, "no step named %q", need)
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
		it = yamlnode.Deref(it)
		if it == nil || it.Kind != yaml.MappingNode {
			continue
		}
		for i := 0; i+1 < len(it.Content); i += 2 {
			if k, v := yamlnode.Deref(it.Content[i]), yamlnode.Deref(it.Content[i+1]); k != nil && k.Value == "name" && v != nil && v.Value == name {
				return true
			}
		}
	}
	return false
}

func (d *decoder) step(n *yaml.Node, field string) *Step {
	dn := yamlnode.Deref(n)
	if dn == nil || dn.Kind != yaml.MappingNode {
		d.Fail(dn, field, "expected a step (a mapping with name: and run: or sh:), got %s", yamlnode.Describe(dn))
		return nil
	}
	s := &Step{Line: dn.Line, Col: dn.Column, pos: map[string]*yaml.Node{}}
	var haveRun, haveSh, haveTimeout bool
	d.Object(dn, field, []yamlnode.Field{
		{Name: "name", Fn: func(_, v *yaml.Node, f string, _ bool) {
			s.pos["name"] = yamlnode.Deref(v)
			if str, ok := d.name(v, f, "step"); ok {
				s.Name = str
			}
		}},
		{Name: "run", Fn: func(_, v *yaml.Node, f string, _ bool) {
			haveRun = true
			s.pos["run"] = yamlnode.Deref(v)
			dv := yamlnode.Deref(v)
			if dv != nil && dv.Kind == yaml.ScalarNode && !yamlnode.IsNull(dv) {
				d.Fail(dv, f, "expected an argv list (as [go, test, ./...]), got %s; for a shell command line use sh:", yamlnode.Describe(dv))
				return
			}
			argv, ok := d.StrList(v, f)
			if !ok {
				return
			}
			if len(argv) == 0 {
				d.Fail(dv, f, "empty argv: the first word names a tool of the policy")
				return
			}
			if argv[0] == "" {
				d.Fail(dv.Content[0], yamlnode.Index(f, 0), "empty tool name")
				return
			}
			s.Run = argv
		}},
		{Name: "sh", Fn: func(_, v *yaml.Node, f string, _ bool) {
			haveSh = true
			s.pos["sh"] = yamlnode.Deref(v)
			if str, ok := d.Str(v, f); ok {
				if strings.TrimSpace(str) == "" {
					d.Fail(yamlnode.Deref(v), f, "empty script")
					return
				}
				s.Sh = str
			}
		}},
		{Name: "cwd", Fn: func(_, v *yaml.Node, f string, _ bool) {
			s.pos["cwd"] = yamlnode.Deref(v)
			if str, ok := d.Str(v, f); ok {
				s.Cwd = str
			}
		}},
		{Name: "env", Fn: func(_, v *yaml.Node, f string, _ bool) { s.Env = d.env(v, f) }},
		{Name: "timeout", Fn: func(_, v *yaml.Node, f string, _ bool) {
			haveTimeout = true
			s.pos["timeout"] = yamlnode.Deref(v)
			if t, ok := d.duration(v, f); ok {
				s.Limits.Timeout = t
			}
		}},
		{Name: "limits", Fn: func(_, v *yaml.Node, f string, _ bool) { d.limits(s, v, f, &haveTimeout) }},
		{Name: "continue_on_error", Fn: func(_, v *yaml.Node, f string, _ bool) {
			if b, ok := d.Boolean(v, f); ok {
				s.ContinueOnError = b
			}
		}},
		{Name: "needs", Fn: func(_, v *yaml.Node, f string, _ bool) {
			items, ok := d.Seq(v, f)
			if !ok {
				return
			}
			seen := map[string]bool{}
			for i, it := range items {
				nf := yamlnode.Index(f, i)
				str, ok := d.Str(it, nf)
				if !ok {
					continue
				}
				if seen[str] {
					d.Fail(yamlnode.Deref(it), nf, "%q is listed twice", str)
					continue
				}
				seen[str] = true
				s.pos[nf] = yamlnode.Deref(it)
				s.Needs = append(s.Needs, str)
			}
		}},
	})
	if _, ok := s.pos["name"]; !ok {
		d.Fail(dn, yamlnode.Join(field, "name"), "missing (every step needs a name)")
	}
	switch {
	case haveRun && haveSh:
		d.Fail(s.pos["sh"], yamlnode.Join(field, "sh"), "both run: and sh: are set; use one")
	case !haveRun && !haveSh:
		d.Fail(dn, field, "missing run: (an argv list) or sh: (a script)")
	}
	return s
}

func (d *decoder) limits(s *Step, n *yaml.Node, field string, haveTimeout *bool) {
	d.Object(n, field, []yamlnode.Field{
		{Name: "timeout", Fn: func(k, v *yaml.Node, f string, _ bool) {
			if *haveTimeout {
				d.Fail(k, f, "both timeout: and limits.timeout: are set; use one")
				return
			}
			*haveTimeout = true
			s.pos["timeout"] = yamlnode.Deref(v)
			if t, ok := d.duration(v, f); ok {
				s.Limits.Timeout = t
			}
		}},
		{Name: "output", Fn: func(_, v *yaml.Node, f string, _ bool) {
			s.pos["limits.output"] = yamlnode.Deref(v)
			if b, ok := d.size(v, f); ok {
				s.Limits.Output = b
			}
		}},
		{Name: "memory", Fn: func(_, v *yaml.Node, f string, _ bool) {
			s.pos["limits.memory"] = yamlnode.Deref(v)
			if b, ok := d.size(v, f); ok {
				s.Limits.Memory = b
			}
		}},
		{Name: "pids", Fn: func(_, v *yaml.Node, f string, _ bool) {
			s.pos["limits.pids"] = yamlnode.Deref(v)
			dv := yamlnode.Deref(v)
			var x int64
			if dv == nil || dv.Kind != yaml.ScalarNode || dv.Tag != "!!int" || dv.Decode(&x) != nil || x < 1 || x > 1<<22 {
				d.Fail(dv, f, "expected a process count (1 to %d), got %s", 1<<22, yamlnode.Describe(dv))
				return
			}
			s.Limits.Pids = x
		}},
		{Name: "cpu", Fn: func(_, v *yaml.Node, f string, _ bool) {
			s.pos["limits.cpu"] = yamlnode.Deref(v)
			dv := yamlnode.Deref(v)
			if dv == nil || dv.Kind != yaml.ScalarNode || yamlnode.IsNull(dv) {
				d.Fail(dv, f, "expected a CPU limit (as 1.5 or 150%%), got %s", yamlnode.Describe(dv))
				return
			}
			c, err := policy.ParseCPU(dv.Value)
			if err != nil {
				d.Fail(dv, f, "%v", err)
				return
			}
			s.Limits.CPU = c
		}},
	})
}

func (d *decoder) duration(v *yaml.Node, field string) (time.Duration, bool) {
	n := yamlnode.Deref(v)
	if n == nil || n.Kind != yaml.ScalarNode || yamlnode.IsNull(n) {
		d.Fail(n, field, "expected a duration (as 30s), got %s", yamlnode.Describe(n))
		return 0, false
	}
	if n.Tag == "!!int" || n.Tag == "!!float" {
		d.Fail(n, field, "%s is not a duration: give a unit, as %ss", n.Value, n.Value)
		return 0, false
	}
	t, err := policy.ParseDuration(n.Value)
	if err != nil {
		d.Fail(n, field, "%v", err)
		return 0, false
	}
	return t, true
}

func (d *decoder) size(v *yaml.Node, field string) (int64, bool) {
	n := yamlnode.Deref(v)
	if n == nil || n.Kind != yaml.ScalarNode || yamlnode.IsNull(n) || (n.Tag != "!!str" && n.Tag != "!!int") {
		d.Fail(n, field, "expected a size (as 512MiB), got %s", yamlnode.Describe(n))
		return 0, false
	}
	b, err := policy.ParseSize(n.Value)
	if err != nil {
		d.Fail(n, field, "%v", err)
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
	dv := yamlnode.Deref(v)
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
