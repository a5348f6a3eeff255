package policy

import (
	"fmt"

	"github.com/agentexec/agentexec/internal/yamlnode"
)

// FieldError is one problem in a policy, located by file, line and column and named
// by its field path, e.g.
//
//	agent.yaml:14:9: tools.git.limits.memory: "12XB" is not a size
//
// Parse and Resolve return every problem they find at once, joined with errors.Join;
// use errors.As (or the Unwrap() []error method of the joined error) to reach them.
//
// FieldError is a type alias of the project-internal yamlnode.FieldError, which the
// job files of agentexec ci report too; its fields and methods are:
//
//	type FieldError struct {
//		// File is the policy's name as given to Parse or Load.
//		File string
//		// Line and Col locate the offending YAML node (1-based; 0 when unknown).
//		Line, Col int
//		// Field is the dotted field path, with list indices: "defaults.filesystem.read[2]".
//		// It is "" for problems that belong to no field (YAML syntax errors).
//		Field string
//		// Msg says what is wrong.
//		Msg string
//		// Err is the underlying error, if any (Resolve's *ResolveError, for instance).
//		Err error
//	}
//
//	// Error formats the problem as FILE:LINE:COL: FIELD: MSG.
//	func (e *FieldError) Error() string
//	// Unwrap returns the underlying error.
//	func (e *FieldError) Unwrap() error
type FieldError = yamlnode.FieldError

// ResolveError says why a tool's executable could not be used on this host.
// It wraps fs.ErrNotExist, fs.ErrPermission or the stat error, so errors.Is works.
type ResolveError struct {
	// Tool is the tool's name, Exec its exec field as written.
	Tool, Exec string
	// Tried lists the candidate paths that were examined, in order.
	Tried []string
	// Reason is a short explanation ("not found in /usr/local/bin:/usr/bin:/bin").
	Reason string
	// Err is the underlying error.
	Err error
}

// Error describes the failure.
func (e *ResolveError) Error() string {
	return fmt.Sprintf("tool %s: %q %s", e.Tool, e.Exec, e.Reason)
}

// Unwrap returns the underlying error.
func (e *ResolveError) Unwrap() error { return e.Err }

// ArgDenial says which argv rule refused which argument of a launch.
type ArgDenial struct {
	// Rule is the field path of the pattern that refused the launch (a deny pattern,
	// such as "tools.git.args.deny[0]"), or of the allow list when no allow pattern
	// matched ("tools.git.args.allow").
	Rule string
	// Pattern is the text of the denying pattern ("" when no allow pattern matched).
	Pattern string
	// Index is the position in args (0-based, argv[1] is 0) where the denying pattern
	// matched; -1 when no allow pattern matched.
	Index int
	// Args are the arguments the rule matched (a deny) or the whole argv (no allow).
	Args []string
}

// Error formats the denial as "rule tools.git.args.deny[0] ("push"): argument 1 "push" is denied".
func (e *ArgDenial) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("rule %s: arguments %q match no allow pattern", e.Rule, e.Args)
	}
	if len(e.Args) == 1 {
		return fmt.Sprintf("rule %s (%q): argument %d %q is denied", e.Rule, e.Pattern, e.Index+1, e.Args[0])
	}
	return fmt.Sprintf("rule %s (%q): arguments %d-%d %q are denied", e.Rule, e.Pattern, e.Index+1, e.Index+len(e.Args), e.Args)
}
