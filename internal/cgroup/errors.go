package cgroup

import (
	"errors"
	"fmt"
	"strings"

	"github.com/agentexec/agentexec/internal/sys"
)

var (
	// ErrNotSupported matches errors about a cgroup feature the host lacks (no v2
	// hierarchy, a missing controller): it is sys.ErrNotSupported, the one error
	// every missing-feature error of agentexec matches, and errors.ErrUnsupported.
	ErrNotSupported = sys.ErrNotSupported
	// ErrCannotCreate means this process may not create cgroups under its own cgroup.
	ErrCannotCreate = errors.New("cgroup: cannot create child cgroups")
	// ErrPoolExhausted is returned by Pool.Get when all max groups are in use.
	ErrPoolExhausted = errors.New("cgroup: pool exhausted")
	// ErrClosed is returned by operations on a closed Manager or Pool.
	ErrClosed = errors.New("cgroup: closed")
)

// FeatureError describes a missing cgroup feature: what it is, what the host has and
// what is wanted.
type FeatureError struct{ Feature, Have, Want string }

func (e *FeatureError) Error() string {
	return fmt.Sprintf("cgroup: %s not supported: have %s, want %s", e.Feature, e.Have, e.Want)
}

// Is makes FeatureError match ErrNotSupported and errors.ErrUnsupported.
func (e *FeatureError) Is(t error) bool {
	return t == ErrNotSupported || t == errors.ErrUnsupported
}

// UnenforcedError lists limits that the host cannot enforce, for callers whose policy
// requires them (`cgroup: require`).
type UnenforcedError struct {
	Limits []string // "memory", "pids", "cpu"
	Dir    string   // the cgroup whose children lack the controllers
}

func (e *UnenforcedError) Error() string {
	return fmt.Sprintf("cgroup: limits cannot be enforced here: %s (controller(s) not available for children of %s)",
		strings.Join(e.Limits, ", "), e.Dir)
}

// Is makes UnenforcedError match ErrNotSupported and errors.ErrUnsupported.
func (e *UnenforcedError) Is(t error) bool {
	return t == ErrNotSupported || t == errors.ErrUnsupported
}
