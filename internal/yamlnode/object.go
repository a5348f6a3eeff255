package yamlnode

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Field describes one known key of a mapping read by Object or ObjectExt.
type Field struct {
	Name string
	// List marks list-valued fields that ObjectExt lets a caller extend with "name+".
	List bool
	// Fn reads the value: k is the key node, v the value node, field the key's
	// path as written and extend whether the key was "name+".
	Fn func(k, v *yaml.Node, field string, extend bool)
}

// Object dispatches a mapping's keys to specs; unknown keys are errors, with a
// "did you mean" suggestion when one is close. A trailing "+" is part of the key.
// It returns false when n is not a mapping.
func (d *Decoder) Object(n *yaml.Node, field string, specs []Field) bool {
	return d.object(n, field, false, false, specs)
}

// ObjectExt is Object where "name+" names the List field name, extending
// inherited defaults; extendOK says whether this mapping may do that. Setting
// both name and name+ is an error.
func (d *Decoder) ObjectExt(n *yaml.Node, field string, extendOK bool, specs []Field) bool {
	return d.object(n, field, true, extendOK, specs)
}

func (d *Decoder) object(n *yaml.Node, field string, plus, extendOK bool, specs []Field) bool {
	pairs, ok := d.Mapping(n, field)
	if !ok {
		return false
	}
	seenBase := map[string]string{}
	for _, p := range pairs {
		key, extend := p.Key, false
		if base, found := strings.CutSuffix(key, "+"); plus && found && base != "" {
			key, extend = base, true
		}
		var spec *Field
		for i := range specs {
			if specs[i].Name == key {
				spec = &specs[i]
				break
			}
		}
		f := Join(field, p.Key)
		switch {
		case spec == nil:
			names := make([]string, len(specs))
			for i, s := range specs {
				names[i] = s.Name
			}
			msg := fmt.Sprintf("unknown field %q", p.Key)
			if s := Closest(key, names); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += " (known: " + strings.Join(names, ", ") + ")"
			}
			d.Fail(p.K, f, "%s", msg)
			continue
		case extend && !spec.List:
			d.Fail(p.K, f, "%q is not a list; only list fields can be extended with +", key)
			continue
		case extend && !extendOK:
			d.Fail(p.K, f, "%s+ extends the defaults, which only a tool can do; write %s", key, key)
			continue
		}
		if other, dup := seenBase[key]; dup {
			d.Fail(p.K, f, "both %s and %s are set; use one", other, p.Key)
			continue
		}
		seenBase[key] = p.Key
		spec.Fn(p.K, p.V, f, extend)
	}
	return true
}

// Closest returns the candidate within edit distance 2 of s (the nearest), or "".
func Closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := EditDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// EditDistance is the Levenshtein distance of a and b; 99 when either is longer
// than 64 bytes.
func EditDistance(a, b string) int {
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
