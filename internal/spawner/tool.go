package spawner

import (
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/templates"
)

// spawnTool is a tool inside a spawner process: its resolved path and, once
// prepared, its userspace template (open exec fd and identity key).
type spawnTool struct {
	name string
	path string
	// lookup: no template; exec is looked up through searchPath at every launch.
	lookup     bool
	exec       string
	searchPath []string

	mu   sync.Mutex
	tmpl *templates.Template
	err  error // the last preparation error

	// kt is the tool's kernel template (nil: userspace backend); ktErr says why a
	// kernel template could not be made.
	kt    *templates.KernelTemplate
	ktErr error
}

// prepare creates the template; a failure is kept and reported, and the tool still
// launches by path (the exec then reports the problem as 126/127).
func (t *spawnTool) prepare() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.prepareLocked()
}

func (t *spawnTool) prepareLocked() {
	tm, err := templates.New(t.path)
	t.tmpl, t.err = tm, err
}

// resolve returns the path to exec and the template state for this launch: "hit"
// when the prepared binary is unchanged, "created" on first use, "recreated" when a
// package manager replaced the binary since, "none" when no template could be made.
// It cannot fail: whatever goes wrong leaves the path for exec to report.
func (t *spawnTool) resolve() (path string, state templates.State) {
	if t.lookup {
		return t.lookPath(), templates.StateNone
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tmpl == nil {
		t.prepareLocked()
		if t.err != nil {
			return t.path, templates.StateNone
		}
		return t.tmpl.Path, templates.StateCreated
	}
	recreated, err := t.tmpl.Revalidate()
	if err != nil {
		// The binary vanished or cannot be opened: exec by path and let exec report.
		return t.path, templates.StateNone
	}
	if recreated {
		return t.tmpl.Path, templates.StateRecreated
	}
	return t.tmpl.Path, templates.StateHit
}

func (t *spawnTool) status() TemplateStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := TemplateStatus{Name: t.name, Backend: templates.BackendUserspace}
	if t.tmpl != nil {
		s.ELF = t.tmpl.ELF
	}
	switch {
	case t.kt != nil:
		s.Backend = templates.BackendKernel
	case t.err != nil:
		s.Backend = templates.BackendNone
		s.Err = t.err.Error()
	case t.ktErr != nil:
		s.Err = "kernel template: " + t.ktErr.Error()
	}
	return s
}

// lookPath finds the tool's executable through its search path, as execvp does.
func (t *spawnTool) lookPath() string {
	if strings.Contains(t.exec, "/") {
		return t.exec
	}
	for _, dir := range t.searchPath {
		p := filepath.Join(dir, t.exec)
		if unix.Access(p, unix.X_OK) == nil {
			return p
		}
	}
	return t.path
}
