package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// HostOptions returns Options from the running process: the current directory as
// Workspace, $HOME (or the passwd entry) as Home and runtime.NumCPU as CPUs. A fact
// that cannot be found is left empty. TmpDir is left empty on purpose: ${TMPDIR} is
// then a directory private to each runtime (TmpDirPlaceholder), made under the
// process's $TMPDIR (or /tmp) when the runtime starts; set TmpDir to share one.
func HostOptions() Options {
	var o Options
	if wd, err := os.Getwd(); err == nil {
		o.Workspace = wd
	}
	if h, err := os.UserHomeDir(); err == nil && filepath.IsAbs(h) {
		o.Home = h
	}
	o.CPUs = runtime.NumCPU()
	return o
}

// Load reads a policy file, parses it (Parse) and resolves its tools (Resolve).
// Empty fields of opts are filled from HostOptions. Errors name the file as given.
func Load(file string, opts Options) (*Policy, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return LoadBytes(file, data, opts)
}

// LoadBytes is Load for a policy already in memory (the embedded default, say):
// Parse with opts completed from the host (TmpDir stays as given: empty means a
// private ${TMPDIR} per runtime), then Resolve.
func LoadBytes(name string, data []byte, opts Options) (*Policy, error) {
	h := HostOptions()
	if opts.Workspace == "" {
		opts.Workspace = h.Workspace
	}
	if opts.Home == "" {
		opts.Home = h.Home
	}
	if opts.CPUs == 0 {
		opts.CPUs = h.CPUs
	}
	p, err := Parse(name, data, opts)
	if err != nil {
		return nil, err
	}
	if err := Resolve(p); err != nil {
		return p, err
	}
	return p, nil
}

// Resolve is the host step: it finds each tool's executable. A bare exec name is
// looked up through p.Path (the first regular, executable file wins); an absolute one
// is checked. The file found must also lie, after resolving symlinks, beneath one of
// its profile's exec roots (resolved likewise), or the sandbox could not execute it.
//
// Tool.Path is set for every tool found; Tool.ResolveError (a *ResolveError) for
// every tool not found or unusable. Only tools marked required make Resolve return an
// error: the joined *FieldErrors (each wrapping the *ResolveError) of those tools.
// The policy stays usable with its other tools when Resolve fails.
func Resolve(p *Policy) error { return resolve(p, nil) }

// ErrNotResolved is the error of a tool that ResolveTools was not asked for.
var ErrNotResolved = errors.New("not resolved")

// ResolveTools is Resolve for the named tools and the required ones only, for a
// process that runs one tool (agentexec run's one-shot path): the others are left
// with Path empty and a ResolveError wrapping ErrNotResolved. Names that are not
// tools of p are ignored (the caller reports an unknown tool).
func ResolveTools(p *Policy, names ...string) error {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	return resolve(p, func(t *Tool) bool { return want[t.Name] || t.Required })
}

// resolve resolves the tools for which pick is true (all when pick is nil).
func resolve(p *Policy, pick func(*Tool) bool) error {
	var errs []error
	roots := map[string]string{} // exec roots with their symlinks resolved, shared by the tools
	for _, t := range p.Tools {
		t.Path, t.ResolveError = "", nil
		if pick != nil && !pick(t) {
			t.ResolveError = &ResolveError{Tool: t.Name, Exec: t.Exec, Reason: "was not looked up (the policy was resolved for other tools only)", Err: ErrNotResolved}
			continue
		}
		path, rerr := resolveTool(p, t, roots)
		if rerr != nil {
			t.ResolveError = rerr
			if t.Required {
				errs = append(errs, &FieldError{File: p.Source, Line: t.Line, Col: t.Col,
					Field: "tools." + t.Name, Msg: "required tool is unusable: " + rerr.Error(), Err: rerr})
			}
			continue
		}
		t.Path = path
	}
	return errors.Join(errs...)
}

// resolveTool finds t's executable; roots caches the exec roots' resolved paths.
func resolveTool(p *Policy, t *Tool, roots map[string]string) (string, *ResolveError) {
	re := &ResolveError{Tool: t.Name, Exec: t.Exec}
	var found string
	if filepath.IsAbs(t.Exec) {
		re.Tried = []string{t.Exec}
		if err := checkExecutable(t.Exec); err != nil {
			re.Reason, re.Err = "is unusable: "+err.Error(), err
			return "", re
		}
		found = t.Exec
	} else {
		var firstErr error
		for _, dir := range p.Path {
			cand := filepath.Join(dir, t.Exec)
			re.Tried = append(re.Tried, cand)
			err := checkExecutable(cand)
			if err == nil {
				found = cand
				break
			}
			if firstErr == nil && !errors.Is(err, fs.ErrNotExist) {
				firstErr = err
			}
		}
		if found == "" {
			re.Reason = "was not found in " + strings.Join(p.Path, ":")
			re.Err = fs.ErrNotExist
			if firstErr != nil {
				re.Reason += " (" + firstErr.Error() + ")"
				re.Err = firstErr
			}
			return "", re
		}
	}
	if t.Profile != nil {
		real, err := filepath.EvalSymlinks(found)
		if err != nil {
			re.Reason, re.Err = "cannot be resolved: "+err.Error(), err
			return "", re
		}
		ok := false
		for _, root := range t.Profile.FS.Exec {
			r, seen := roots[root]
			if !seen {
				var err error
				if r, err = filepath.EvalSymlinks(root); err != nil {
					r = root
				}
				roots[root] = r
			}
			if Beneath(real, r) {
				ok = true
				break
			}
		}
		if !ok {
			re.Reason = fmt.Sprintf("was found at %s (%s), which is outside every exec root of the tool (%s)",
				found, real, strings.Join(t.Profile.FS.Exec, ", "))
			re.Err = fs.ErrPermission
			return "", re
		}
	}
	return found, nil
}

// errNotRegular and errNotExecutable explain unusable candidates.
var (
	errNotRegular    = errors.New("not a regular file")
	errNotExecutable = errors.New("not executable")
)

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %w", path, errNotRegular)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s: %w (mode %v)", path, errNotExecutable, fi.Mode().Perm())
	}
	return nil
}
