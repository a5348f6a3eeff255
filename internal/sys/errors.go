package sys

import "errors"

// ErrNotSupported is the one error that every "this host lacks a kernel feature"
// error of agentexec matches (errors.Is): a Landlock ABI too old for a rule, a
// missing cgroup controller, no spawn_template syscalls, no network namespaces.
// The packages that report such errors (cgroup, templates, spawner, contain) match
// it, and the root package re-exports it as agentexec.ErrNotSupported. It also
// matches errors.ErrUnsupported.
var ErrNotSupported error = notSupported{}

type notSupported struct{}

func (notSupported) Error() string { return "not supported by this host" }

// Is makes ErrNotSupported match errors.ErrUnsupported too.
func (notSupported) Is(t error) bool { return t == errors.ErrUnsupported }
