package ci

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/agentexec/agentexec/policy"
)

// This file holds the strict, position-keeping helpers that read a job file's
// yaml.Node tree. Every helper reports its problems to the decoder and returns
// ok=false; callers skip the value and go on, so that one parse reports every
// problem. Errors are *policy.FieldError values: FILE:LINE:COL: FIELD: MSG.

type decoder struct {
	file string
	errs []*policy.FieldError
}

func (d *decoder) fail(n *yaml.Node, field, format string, args ...any) {
	fe := &policy.FieldError{File: d.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		fe.Line, fe.Col = n.Line, n.Column
	}
	d.errs = append(d.errs, fe)
}

// add records errors from elsewhere (the policy parser); FieldErrors keep their place
// in the file order, anything else goes last.
func (d *decoder) add(err error) {
	for _, e := range flatten(err) {
		var fe *policy.FieldError
		if errors.As(e, &fe) {
			d.errs = append(d.errs, fe)
		} else {
			d.errs = append(d.errs, &policy.FieldError{File: d.file, Msg: e.Error(), Err: e})
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

func (d *decoder) err() error {
	if len(d.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(d.errs, func(a, b *policy.FieldError) int {
		if a.File != b.File {
			return 0
		}
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	errs := make([]error, 0, len(d.errs))
	seen := map[string]bool{}
	for _, e := range d.errs {
		if s := e.Error(); !seen[s] {
			seen[s] = true
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`)

// syntaxError turns a yaml.v3 error into a *policy.FieldError. yaml.v3 has no typed
// syntax error, so its "yaml: line N: msg" text is the only place the line is found.
func (d *decoder) syntaxError(err error) error {
	fe := &policy.FieldError{File: d.file, Msg: "YAML syntax error: " + strings.TrimPrefix(err.Error(), "yaml: "), Err: err}
	if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Msg = "YAML syntax error: " + m[2]
	}
	return fe
}

// document parses data into its root mapping, insisting on exactly one document.
func (d *decoder) document(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &policy.FieldError{File: d.file, Line: 1, Col: 1, Field: "steps", Msg: "missing: the job file is empty"}
		}
		return nil, d.syntaxError(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, &policy.FieldError{File: d.file, Line: extra.Line, Col: extra.Column, Msg: "a job file is a single YAML document; found another one here"}
	case !errors.Is(err, io.EOF):
		return nil, d.syntaxError(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	root = deref(root)
	if root == nil || root.Kind != yaml.MappingNode {
		line, col := 1, 1
		if root != nil {
			line, col = root.Line, root.Column
		}
		return nil, &policy.FieldError{File: d.file, Line: line, Col: col, Msg: fmt.Sprintf("a job file is a mapping (name:, policy:, steps: …), got %s", describe(root))}
	}
	return root, nil
}

// deref follows aliases (bounded: yaml.v3 rejects self-containing anchors already).
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// describe names a node's kind for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	n = deref(n)
	switch {
	case n == nil || isNull(n):
		return "nothing (null)"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind != yaml.ScalarNode:
		return "an unexpected YAML node"
	}
	switch n.Tag {
	case "!!int", "!!float":
		return "the number " + n.Value
	case "!!bool":
		return "the boolean " + n.Value
	case "!!str":
		return strconv.Quote(n.Value)
	}
	return fmt.Sprintf("%s %q", n.Tag, n.Value)
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

func index(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

// pair is one key/value of a mapping.
type pair struct {
	key  string
	k, v *yaml.Node
}

// mapping returns the pairs of a mapping node in order. null is an empty mapping.
// Duplicate keys, non-scalar keys and merge keys are reported and dropped.
func (d *decoder) mapping(n *yaml.Node, field string) ([]pair, bool) {
	n = deref(n)
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, field, "expected a mapping, got %s", describe(n))
		return nil, false
	}
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	var out []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode || isNull(k) {
			d.fail(k, field, "keys must be plain strings, got %s", describe(k))
			continue
		}
		if k.Tag == "!!merge" {
			d.fail(k, join(field, k.Value), "merge keys (<<) are not supported; use an alias (*name) for a whole value instead")
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			d.fail(k, join(field, k.Value), "duplicate key %q (first defined at line %d, column %d)", k.Value, prev.Line, prev.Column)
			continue
		}
		seen[k.Value] = k
		out = append(out, pair{key: k.Value, k: k, v: v})
	}
	return out, true
}

// seq returns the items of a list node. null is an empty list.
func (d *decoder) seq(n *yaml.Node, field string) ([]*yaml.Node, bool) {
	n = deref(n)
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(n, field, "expected a list, got %s", describe(n))
		return nil, false
	}
	return n.Content, true
}

// str returns a scalar's text. Any non-null scalar is accepted as a string.
func (d *decoder) str(n *yaml.Node, field string) (string, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || isNull(n) {
		d.fail(n, field, "expected a string, got %s", describe(n))
		return "", false
	}
	return n.Value, true
}

// strList returns a list of strings.
func (d *decoder) strList(n *yaml.Node, field string) ([]string, bool) {
	items, ok := d.seq(n, field)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(items))
	all := true
	for i, it := range items {
		s, ok := d.str(it, index(field, i))
		if !ok {
			all = false
			continue
		}
		out = append(out, s)
	}
	return out, all
}

func (d *decoder) boolean(n *yaml.Node, field string) (bool, bool) {
	n = deref(n)
	var b bool
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		d.fail(n, field, "expected true or false, got %s", describe(n))
		return false, false
	}
	return b, true
}

// fieldSpec describes one known key of a mapping.
type fieldSpec struct {
	name string
	fn   func(k, v *yaml.Node, field string)
}

// object dispatches a mapping's keys to specs; unknown keys are errors.
func (d *decoder) object(n *yaml.Node, field string, specs []fieldSpec) bool {
	pairs, ok := d.mapping(n, field)
	if !ok {
		return false
	}
	for _, p := range pairs {
		var spec *fieldSpec
		for i := range specs {
			if specs[i].name == p.key {
				spec = &specs[i]
				break
			}
		}
		f := join(field, p.key)
		if spec == nil {
			names := make([]string, len(specs))
			for i, s := range specs {
				names[i] = s.name
			}
			msg := fmt.Sprintf("unknown field %q", p.key)
			if s := closest(p.key, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += " (known: " + strings.Join(names, ", ") + ")"
			}
			d.fail(p.k, f, "%s", msg)
			continue
		}
		spec.fn(p.k, p.v, f)
	}
	return true
}

// closest returns the candidate within edit distance 2 of s (the nearest), or "".
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
