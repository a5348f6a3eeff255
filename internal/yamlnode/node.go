package yamlnode

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Deref follows aliases (bounded: yaml.v3 rejects self-containing anchors already).
func Deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	return n
}

// IsNull reports whether n is missing or a null scalar.
func IsNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// Describe names a node's kind for "expected X, got Y" messages.
func Describe(n *yaml.Node) string {
	n = Deref(n)
	switch {
	case n == nil || IsNull(n):
		return "nothing (null)"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.AliasNode:
		return "an alias"
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

// Join appends key to the field path field ("" is the root).
func Join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

// Index names item i of the list at field.
func Index(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

// Pair is one key/value of a mapping.
type Pair struct {
	// Key is the key's text; K the (dereferenced) key node, V the value node as
	// written (possibly an alias).
	Key  string
	K, V *yaml.Node
}

// Mapping returns the pairs of a mapping node in order. null is an empty mapping.
// Duplicate keys, non-scalar keys and merge keys are reported and dropped.
func (d *Decoder) Mapping(n *yaml.Node, field string) ([]Pair, bool) {
	n = Deref(n)
	if IsNull(n) {
		return nil, true
	}
	if n.Kind != yaml.MappingNode {
		d.Fail(n, field, "expected a mapping, got %s", Describe(n))
		return nil, false
	}
	seen := make(map[string]*yaml.Node, len(n.Content)/2)
	var out []Pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := Deref(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode || IsNull(k) {
			d.Fail(k, field, "keys must be plain strings, got %s", Describe(k))
			continue
		}
		if k.Tag == "!!merge" {
			d.Fail(k, Join(field, k.Value), "merge keys (<<) are not supported; use an alias (*name) for a whole value instead")
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			d.Fail(k, Join(field, k.Value), "duplicate key %q (first defined at line %d, column %d)", k.Value, prev.Line, prev.Column)
			continue
		}
		seen[k.Value] = k
		out = append(out, Pair{Key: k.Value, K: k, V: v})
	}
	return out, true
}

// Seq returns the items of a list node. null is an empty list.
func (d *Decoder) Seq(n *yaml.Node, field string) ([]*yaml.Node, bool) {
	n = Deref(n)
	if IsNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		d.Fail(n, field, "expected a list, got %s", Describe(n))
		return nil, false
	}
	return n.Content, true
}

// Str returns a scalar's text. Any non-null scalar is accepted as a string.
func (d *Decoder) Str(n *yaml.Node, field string) (string, bool) {
	n = Deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || IsNull(n) {
		d.Fail(n, field, "expected a string, got %s", Describe(n))
		return "", false
	}
	return n.Value, true
}

// StrList returns a list of strings; ok is false if the list or any item is bad
// (the good items are still returned).
func (d *Decoder) StrList(n *yaml.Node, field string) ([]string, bool) {
	items, ok := d.Seq(n, field)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(items))
	all := true
	for i, it := range items {
		s, ok := d.Str(it, Index(field, i))
		if !ok {
			all = false
			continue
		}
		out = append(out, s)
	}
	return out, all
}

// Boolean returns a !!bool scalar.
func (d *Decoder) Boolean(n *yaml.Node, field string) (bool, bool) {
	n = Deref(n)
	var b bool
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		d.Fail(n, field, "expected true or false, got %s", Describe(n))
		return false, false
	}
	return b, true
}

// Integer returns an !!int scalar within [lo, hi].
func (d *Decoder) Integer(n *yaml.Node, field string, lo, hi int64) (int64, bool) {
	n = Deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		d.Fail(n, field, "expected an integer, got %s", Describe(n))
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		d.Fail(n, field, "%s is out of range (%d to %d)", n.Value, lo, hi)
		return 0, false
	}
	if v < lo || v > hi {
		d.Fail(n, field, "%s is out of range (%d to %d)", n.Value, lo, hi)
		return 0, false
	}
	return v, true
}

// Enum returns a string scalar that is one of allowed.
func (d *Decoder) Enum(n *yaml.Node, field string, allowed ...string) (string, bool) {
	n = Deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || IsNull(n) {
		d.Fail(n, field, "expected one of %s, got %s", strings.Join(allowed, ", "), Describe(n))
		return "", false
	}
	for _, a := range allowed {
		if n.Value == a {
			return a, true
		}
	}
	d.Fail(n, field, "%q is not one of %s", n.Value, strings.Join(allowed, ", "))
	return "", false
}
