package policy

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// LaunchRequest is what a caller asks to run, as far as the policy decides it.
type LaunchRequest struct {
	Tool string
	Args []string
	// Dir is the working directory: "" for the workspace, relative paths are
	// relative to it.
	Dir string
	Env map[string]string
	// Limits are the request's own limits (nil: the profile's).
	Limits *Limits
}

// Admission is a request the policy allows: the tool, the working directory
// (absolute and clean), the tool's environment, and its limits.
type Admission struct {
	Tool *Tool
	Dir  string
	// Env is the request's allowed variables (sorted by name) and then the tool's
	// fixed ones (env.set), which win over the request's.
	Env []string
	// Limits is the profile's limits lowered by the request's; LimitsAsked tells
	// whether the request asked for any (the launch then uses a pool of its own).
	Limits      Limits
	LimitsAsked bool
}

// Refusal is the policy's denial of a request. It names the rule, the operation and
// the object, so that the user knows what to change:
//
//	rule tools.git.args.deny[0]: argv "push": matches "push" at argument 1
//
// (The engine wraps it in agentexec.DeniedError.)
type Refusal struct {
	// Rule is the policy field path that refused, such as "tools.git.args.deny[0]"
	// or "tools" (no such tool).
	Rule string
	// Op is what was refused: "launch", "argv", "dir", "env", "limits".
	Op string
	// Object is what the operation was applied to: the tool, the arguments, a path,
	// a variable name.
	Object string
	// Reason says why, in a few words.
	Reason string
	// Hint is the smallest policy change that would allow the request, or says
	// that none should (an explicit deny pattern).
	Hint *Hint
}

func (r *Refusal) Error() string {
	return fmt.Sprintf("rule %s: %s %s: %s", r.Rule, r.Op, r.Object, r.Reason)
}

// Admit decides whether the request may run: the tool exists, its arguments pass
// the tool's patterns, the working directory lies inside one of the profile's
// roots, every variable is on the allow-list, and the request's limits do not
// exceed the policy's. It is pure: it reads nothing from the host (whether the
// tool's executable exists here is the engine's question, asked after).
func (p *Policy) Admit(req LaunchRequest) (*Admission, *Refusal) {
	t, ok := p.Tool(req.Tool)
	if !ok {
		return nil, p.refuse(req.Tool, &Refusal{Rule: "tools", Op: "launch", Object: fmt.Sprintf("%q", req.Tool), Reason: "no such tool in the policy"},
			DeniedObject{Name: req.Tool, Rule: "tools"})
	}
	if d := t.Args.Check(req.Args); d != nil {
		reason := "no allow pattern matches"
		if d.Index >= 0 {
			reason = fmt.Sprintf("matches %q at argument %d", d.Pattern, d.Index+1)
		}
		return nil, p.refuse(t.Name, &Refusal{Rule: d.Rule, Op: "argv", Object: fmt.Sprintf("%q", strings.Join(d.Args, " ")), Reason: reason},
			DeniedObject{Args: d.Args, Rule: d.Rule})
	}
	a := &Admission{Tool: t, Dir: p.workDir(req.Dir)}
	fs := t.Profile.FS
	if !beneathAny(a.Dir, fs.Read, fs.Write, fs.Exec) {
		rule := "tools." + t.Name + ".filesystem"
		return nil, p.refuse(t.Name, &Refusal{Rule: rule, Op: "dir", Object: a.Dir, Reason: "outside every read, write and exec root"},
			DeniedObject{Path: a.Dir, Rule: rule})
	}
	var r *Refusal
	var obj DeniedObject
	if a.Env, r, obj = t.environment(req.Env); r != nil {
		return nil, p.refuse(t.Name, r, obj)
	}
	if a.Limits, r, obj = t.lowerLimits(req.Limits); r != nil {
		return nil, p.refuse(t.Name, r, obj)
	}
	a.LimitsAsked = req.Limits != nil
	return a, nil
}

// refuse adds its hint to a refusal of a request for tool.
func (p *Policy) refuse(tool string, r *Refusal, obj DeniedObject) *Refusal {
	r.Hint = p.Hint(tool, r.Denial(obj))
	return r
}

// Denial is the refusal as one of a launch's denials (layer policy, access
// "policy.<op>"), with obj naming what was refused.
func (r *Refusal) Denial(obj DeniedObject) Denial {
	return Denial{Layer: LayerPolicy, Access: "policy." + r.Op, Object: obj, Count: 1, Hint: r.Hint}
}

// workDir is the absolute, clean working directory of a request's Dir.
func (p *Policy) workDir(dir string) string {
	if dir == "" {
		dir = p.Workspace
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(p.Workspace, dir)
	}
	return filepath.Clean(dir)
}

func beneathAny(path string, lists ...[]string) bool {
	for _, l := range lists {
		if slices.ContainsFunc(l, func(root string) bool { return Beneath(path, root) }) {
			return true
		}
	}
	return false
}

// environment is the tool's environment for a request's variables: each must be on
// the allow-list; the tool's fixed values (env.set) win.
func (t *Tool) environment(vars map[string]string) ([]string, *Refusal, DeniedObject) {
	env := make([]string, 0, len(vars)+len(t.Env.Set))
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !t.Env.Allowed(k) {
			rule := "tools." + t.Name + ".env.allow"
			return nil, &Refusal{Rule: rule, Op: "env", Object: k, Reason: "variable not on the allow-list"}, DeniedObject{Name: k, Rule: rule}
		}
		if slices.ContainsFunc(t.Env.Set, func(v EnvVar) bool { return v.Name == k }) {
			continue // fixed values win
		}
		env = append(env, k+"="+vars[k])
	}
	for _, v := range t.Env.Set {
		env = append(env, v.Name+"="+v.Value)
	}
	return env, nil, DeniedObject{}
}

// lowerLimits merges a request's limits into the profile's: a request may only
// lower them.
func (t *Tool) lowerLimits(req *Limits) (Limits, *Refusal, DeniedObject) {
	lim := t.Profile.Limits
	if req == nil {
		return lim, nil, DeniedObject{}
	}
	for _, l := range []struct {
		name           string
		asked, allowed float64
		set            func()
	}{
		{"memory", float64(req.Memory), float64(lim.Memory), func() { lim.Memory = req.Memory }},
		{"pids", float64(req.Pids), float64(lim.Pids), func() { lim.Pids = req.Pids }},
		{"cpu", req.CPU, lim.CPU, func() { lim.CPU = req.CPU }},
	} {
		if l.asked <= 0 {
			continue
		}
		if l.allowed > 0 && l.asked > l.allowed {
			rule := "tools." + t.Name + ".limits." + l.name
			return lim, &Refusal{Rule: rule, Op: "limits", Object: fmt.Sprintf("%s %g", l.name, l.asked),
				Reason: fmt.Sprintf("above the policy's %g", l.allowed)}, DeniedObject{Name: l.name, Rule: rule}
		}
		l.set()
	}
	return lim, nil, DeniedObject{}
}
