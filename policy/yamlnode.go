package policy

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file holds the strict, position-keeping helpers that read yaml.Node trees.
// Every helper reports its problems to the decoder and returns ok=false; callers
// skip the value and go on, so that one Parse reports every problem.

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

func (d *decoder) boolean(n *yaml.Node, field string) (bool, bool) {
	n = deref(n)
	var b bool
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
		d.fail(n, field, "expected true or false, got %s", describe(n))
		return false, false
	}
	return b, true
}

// integer returns an !!int scalar within [lo, hi].
func (d *decoder) integer(n *yaml.Node, field string, lo, hi int64) (int64, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		d.fail(n, field, "expected an integer, got %s", describe(n))
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		d.fail(n, field, "%s is out of range (%d to %d)", n.Value, lo, hi)
		return 0, false
	}
	if v < lo || v > hi {
		d.fail(n, field, "%s is out of range (%d to %d)", n.Value, lo, hi)
		return 0, false
	}
	return v, true
}

// enum returns a string scalar that is one of allowed.
func (d *decoder) enum(n *yaml.Node, field string, allowed ...string) (string, bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || isNull(n) {
		d.fail(n, field, "expected one of %s, got %s", strings.Join(allowed, ", "), describe(n))
		return "", false
	}
	for _, a := range allowed {
		if n.Value == a {
			return a, true
		}
	}
	d.fail(n, field, "%q is not one of %s", n.Value, strings.Join(allowed, ", "))
	return "", false
}

// fieldSpec describes one known key of a mapping.
type fieldSpec struct {
	name string
	// list marks list-valued fields that tools may extend with "name+".
	list bool
	fn   func(v *yaml.Node, field string, extend bool)
}

// object dispatches a mapping's keys to specs. extendOK allows "key+" for list specs.
func (d *decoder) object(n *yaml.Node, field string, extendOK bool, specs []fieldSpec) {
	pairs, ok := d.mapping(n, field)
	if !ok {
		return
	}
	seenBase := map[string]string{}
	for _, p := range pairs {
		key, extend := p.key, false
		if base, found := strings.CutSuffix(key, "+"); found && base != "" {
			key, extend = base, true
		}
		var spec *fieldSpec
		for i := range specs {
			if specs[i].name == key {
				spec = &specs[i]
				break
			}
		}
		f := join(field, p.key)
		switch {
		case spec == nil:
			names := make([]string, len(specs))
			for i, s := range specs {
				names[i] = s.name
			}
			msg := fmt.Sprintf("unknown field %q", p.key)
			if s := closest(key, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += " (known: " + strings.Join(names, ", ") + ")"
			}
			d.fail(p.k, f, "%s", msg)
			continue
		case extend && !spec.list:
			d.fail(p.k, f, "%q is not a list; only list fields can be extended with +", key)
			continue
		case extend && !extendOK:
			d.fail(p.k, f, "%s+ extends the defaults, which only a tool can do; write %s", key, key)
			continue
		}
		if other, dup := seenBase[key]; dup {
			d.fail(p.k, f, "both %s and %s are set; use one", other, p.key)
			continue
		}
		seenBase[key] = p.key
		spec.fn(p.v, f, extend)
	}
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
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
