package agentexec

import (
	"errors"
	"fmt"

	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/policy"
)

// ErrDenied is matched (errors.Is) by every DeniedError.
var ErrDenied = errors.New("denied by policy")

// ErrNotSupported is matched (errors.Is) by every error about a kernel feature the
// host lacks that the policy requires: Landlock rules above the kernel's ABI,
// cgroups or a controller under `cgroup: require` (also for Request.Limits),
// spawn_template syscalls under `kernel_templates: require`, network namespaces
// under `isolated: require`. It also matches errors.ErrUnsupported.
var ErrNotSupported = sys.ErrNotSupported

// ErrSpawnerNotServed is matched by New's error when the spawner binary did not
// answer as a spawner: most often an embedding program whose main does not call
// ServeSpawner first thing (see ServeSpawner), which New detects within five seconds.
var ErrSpawnerNotServed = spawner.ErrNotServed

// ErrClosed is returned by a Runtime after Close.
var ErrClosed = errors.New("agentexec: runtime closed")

// DeniedError is a launch the policy refused (policy.Admit's Refusal). It names the
// rule, the operation and the object, so that the user knows what to change:
//
//	rule tools.git.args.deny[0]: argv "push": matches "push" at argument 1
type DeniedError policy.Refusal

func (e *DeniedError) Error() string { return (*policy.Refusal)(e).Error() }

// Is makes DeniedError match ErrDenied.
func (e *DeniedError) Is(t error) bool { return t == ErrDenied }

// LaunchError is a launch that failed for a reason other than the policy or the
// tool itself: the spawner died, a cgroup could not be had, a pipe could not be made.
type LaunchError struct {
	Tool string
	Op   string
	Err  error
}

func (e *LaunchError) Error() string { return fmt.Sprintf("launch %s: %s: %v", e.Tool, e.Op, e.Err) }

// Unwrap returns the cause.
func (e *LaunchError) Unwrap() error { return e.Err }
