package ci

import (
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/agentexec/agentexec/internal/yamlnode"
	"github.com/agentexec/agentexec/policy"
)

// The strict, position-keeping helpers that read a job file's yaml.Node tree
// (Fail, Mapping, Str, Object, …) are those of internal/yamlnode, which the policy
// parser uses too. Every helper reports its problems to the decoder and returns
// ok=false; callers skip the value and go on, so that one parse reports every
// problem. Errors are *policy.FieldError values: FILE:LINE:COL: FIELD: MSG.

type decoder struct {
	yamlnode.Decoder
}

// add records errors from elsewhere (the policy parser); FieldErrors keep their place
// in the file order, anything else goes last.
func (d *decoder) add(err error) {
	for _, e := range flatten(err) {
		var fe *policy.FieldError
		if errors.As(e, &fe) {
			d.Errs = append(d.Errs, fe)
		} else {
			d.Errs = append(d.Errs, &policy.FieldError{File: d.File, Msg: e.Error(), Err: e})
		}
	}
}

// flatten unwraps errors.Join trees into their leaves.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// document parses data into its root mapping, insisting on exactly one document.
func (d *decoder) document(data []byte) (*yaml.Node, error) {
	root, err := d.Single(data, "a job file")
	if err != nil {
		return nil, err
	}
	if root == nil {
		return nil, &policy.FieldError{File: d.File, Line: 1, Col: 1, Field: "steps", Msg: "missing: the job file is empty"}
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	root = yamlnode.Deref(root)
	if root == nil || root.Kind != yaml.MappingNode {
		line, col := 1, 1
		if root != nil {
			line, col = root.Line, root.Column
		}
		return nil, &policy.FieldError{File: d.File, Line: line, Col: col, Msg: fmt.Sprintf("a job file is a mapping (name:, policy:, steps: …), got %s", yamlnode.Describe(root))}
	}
	return root, nil
}
