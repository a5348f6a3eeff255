package yamlnode

import (
	"fmt"
	"strings"
)

// FieldError is one problem in a YAML file, located by file, line and column and
// named by its field path, e.g.
//
//	agent.yaml:14:9: tools.git.limits.memory: "12XB" is not a size
//
// The public name is policy.FieldError (a type alias of this type); job files of
// internal/ci report the same type.
type FieldError struct {
	// File is the file's name as given to the parser (policy.Parse, policy.Load,
	// ci.Parse, …).
	File string
	// Line and Col locate the offending YAML node (1-based; 0 when unknown).
	Line, Col int
	// Field is the dotted field path, with list indices: "defaults.filesystem.read[2]".
	// It is "" for problems that belong to no field (YAML syntax errors).
	Field string
	// Msg says what is wrong.
	Msg string
	// Err is the underlying error, if any (policy.Resolve's *ResolveError, for instance).
	Err error
}

// Error formats the problem as FILE:LINE:COL: FIELD: MSG.
func (e *FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	switch {
	case e.Line > 0 && e.Col > 0:
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	case e.Line > 0:
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying error.
func (e *FieldError) Unwrap() error { return e.Err }
