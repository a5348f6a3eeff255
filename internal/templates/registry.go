package templates

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// State says what happened to a tool's template on a launch.
type State string

const (
	// StateHit means the prepared template was valid and used.
	StateHit State = "hit"
	// StateCreated means the template was created on first use (a tool not marked hot).
	StateCreated State = "created"
	// StateRecreated means the binary had changed and the template was recreated.
	StateRecreated State = "recreated"
	// StateNone means no template could be used; the launch goes by path.
	StateNone State = "none"
)

// ErrUnknownTool is matched by Registry.Get's error for a tool never added.
var ErrUnknownTool = errors.New("unknown tool")

// Registry maps tool names to userspace templates. It is safe for concurrent use:
// launches of different tools do not wait for each other, and each Get returns a
// consistent Snapshot of one tool's template.
type Registry struct {
	mu    sync.RWMutex
	tools map[string]*regEntry
}

type regEntry struct {
	path string
	hot  bool
	env  []string // base environment, copied into each (re)created template

	mu  sync.Mutex
	t   *Template
	err error // the last creation or revalidation error
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{tools: map[string]*regEntry{}} }

// Add registers tool at the absolute path. A hot tool's template is created now and
// the creation error, if any, is returned (the tool stays registered, and Get retries);
// other tools get theirs on first use.
func (r *Registry) Add(tool, path string, hot bool) error {
	e := &regEntry{path: path, hot: hot}
	r.mu.Lock()
	if old, ok := r.tools[tool]; ok {
		r.mu.Unlock()
		return fmt.Errorf("templates: tool %q already registered (path %s)", tool, old.path)
	}
	r.tools[tool] = e
	r.mu.Unlock()
	if !hot {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.createLocked(); err != nil {
		return fmt.Errorf("templates: tool %q: %w", tool, err)
	}
	return nil
}

func (e *regEntry) createLocked() error {
	e.t, e.err = New(e.path)
	if e.err == nil {
		e.t.BaseEnv = e.env
	}
	return e.err
}

// SetBaseEnv sets the pre-built base environment carried in tool's snapshots.
func (r *Registry) SetBaseEnv(tool string, env []string) error {
	r.mu.RLock()
	e, ok := r.tools[tool]
	r.mu.RUnlock()
	if !ok {
		return fmt.Errorf("templates: %q: %w", tool, ErrUnknownTool)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.env = env
	if e.t != nil {
		e.t.mu.Lock()
		e.t.BaseEnv = env
		e.t.mu.Unlock()
	}
	return nil
}

// Get revalidates tool's template and returns what to launch. On StateNone the
// snapshot still carries the registered path (exec it and let exec report the
// failure) and err says why no template was used.
func (r *Registry) Get(tool string) (Snapshot, State, error) {
	r.mu.RLock()
	e, ok := r.tools[tool]
	r.mu.RUnlock()
	if !ok {
		return Snapshot{}, StateNone, fmt.Errorf("templates: %q: %w", tool, ErrUnknownTool)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.t == nil {
		if err := e.createLocked(); err != nil {
			return Snapshot{Path: e.path}, StateNone, fmt.Errorf("templates: tool %q: %w", tool, err)
		}
		return e.t.Snapshot(), StateCreated, nil
	}
	e.t.mu.Lock()
	defer e.t.mu.Unlock()
	recreated, err := e.t.revalidateLocked()
	if err != nil {
		e.err = err
		return Snapshot{Path: e.path}, StateNone, fmt.Errorf("templates: tool %q: %w", tool, err)
	}
	e.err = nil
	if recreated {
		return e.t.snapshotLocked(), StateRecreated, nil
	}
	return e.t.snapshotLocked(), StateHit, nil
}

// ToolStatus describes one tool's template for `agentexec check`.
type ToolStatus struct {
	Tool, Path string
	Hot        bool
	Ready      bool // a template exists
	ELF        bool
	Stats      Stats
	Err        string // the last creation or revalidation error
}

// Status lists every tool, sorted by name.
func (r *Registry) Status() []ToolStatus {
	r.mu.RLock()
	names := make([]string, 0, len(r.tools))
	for n := range r.tools {
		names = append(names, n)
	}
	r.mu.RUnlock()
	sort.Strings(names)
	out := make([]ToolStatus, 0, len(names))
	for _, n := range names {
		r.mu.RLock()
		e := r.tools[n]
		r.mu.RUnlock()
		e.mu.Lock()
		s := ToolStatus{Tool: n, Path: e.path, Hot: e.hot, Ready: e.t != nil}
		if e.t != nil {
			snap := e.t.Snapshot()
			s.ELF = snap.ELF
			s.Stats = e.t.Stats()
		}
		if e.err != nil {
			s.Err = e.err.Error()
		}
		e.mu.Unlock()
		out = append(out, s)
	}
	return out
}

// Stats sums the counters of all templates.
func (r *Registry) Stats() Stats {
	var sum Stats
	for _, s := range r.Status() {
		sum.Hits += s.Stats.Hits
		sum.Recreations += s.Stats.Recreations
		sum.Creations += s.Stats.Creations
	}
	return sum
}

// Close closes every template; the registry must not be used afterwards.
func (r *Registry) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, e := range r.tools {
		e.mu.Lock()
		if e.t != nil {
			errs = append(errs, e.t.Close())
		}
		e.mu.Unlock()
	}
	return errors.Join(errs...)
}
