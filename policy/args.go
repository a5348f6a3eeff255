package policy

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// ParsePattern parses an argv pattern (see ArgRules) and names it rule in errors and
// denials. Empty patterns, empty words and empty alternatives ("a||b", "a|") are errors.
func ParsePattern(rule, text string) (Pattern, error) {
	p := Pattern{Rule: rule, Text: text}
	if !utf8.ValidString(text) {
		return p, fmt.Errorf("pattern %q is not valid UTF-8", text)
	}
	words := strings.Fields(text)
	if len(words) == 0 {
		return p, fmt.Errorf("empty pattern")
	}
	for i, w := range words {
		alts := strings.Split(w, "|")
		for _, a := range alts {
			if a == "" {
				return p, fmt.Errorf("pattern %q: word %d (%q) has an empty alternative", text, i+1, w)
			}
		}
		p.Words = append(p.Words, alts)
	}
	return p, nil
}

// matchAt reports whether the pattern's words match args[i:i+len(Words)].
func (p *Pattern) matchAt(args []string, i int) bool {
	if i+len(p.Words) > len(args) {
		return false
	}
	for j, alts := range p.Words {
		if !matchAny(alts, args[i+j]) {
			return false
		}
	}
	return true
}

func matchAny(alts []string, s string) bool {
	for _, a := range alts {
		if Glob(a, s) {
			return true
		}
	}
	return false
}

// Glob reports whether s matches pattern, in which "*" matches any run of characters
// (including none and including "/") and "?" exactly one character; every other
// character matches itself.
func Glob(pattern, s string) bool {
	// Iterative wildcard matching with one backtrack point: linear in practice,
	// O(len(pattern)·len(s)) at worst, no recursion.
	px, sx := 0, 0
	starPx, starSx := -1, 0
	for sx < len(s) {
		if px < len(pattern) {
			switch c := pattern[px]; c {
			case '*':
				starPx, starSx = px, sx
				px++
				continue
			case '?':
				_, n := utf8.DecodeRuneInString(s[sx:])
				px++
				sx += n
				continue
			default:
				if c == s[sx] {
					px++
					sx++
					continue
				}
			}
		}
		if starPx >= 0 {
			_, n := utf8.DecodeRuneInString(s[starSx:])
			starSx += n
			px, sx = starPx+1, starSx
			continue
		}
		return false
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}

// Check applies the rules to a launch's arguments (argv without argv[0]). It returns
// nil when the arguments are allowed, and otherwise the denial naming the rule:
//
//   - every deny pattern is tried at every position; the first match (in rule order,
//     then by position) refuses the launch;
//   - then, if there are allow patterns, one of them must match args from the first
//     argument on (args may continue past the pattern's words).
//
// A nil *ArgRules allows everything. The result is a pointer, not an error: compare
// it with nil before storing it in an error variable.
func (r *ArgRules) Check(args []string) *ArgDenial {
	if r == nil {
		return nil
	}
	for i := range r.Deny {
		d := &r.Deny[i]
		for at := 0; at+len(d.Words) <= len(args); at++ {
			if d.matchAt(args, at) {
				return &ArgDenial{Rule: d.Rule, Pattern: d.Text, Index: at, Args: args[at : at+len(d.Words)]}
			}
		}
	}
	if len(r.Allow) == 0 {
		return nil
	}
	for i := range r.Allow {
		if r.Allow[i].matchAt(args, 0) {
			return nil
		}
	}
	rule := r.Allow[0].Rule
	if k := strings.LastIndexByte(rule, '['); k > 0 {
		rule = rule[:k]
	}
	return &ArgDenial{Rule: rule, Index: -1, Args: args}
}

// Allowed reports whether a request may set the variable name: it matches one of the
// allow-list's globs (see Glob) and is a valid variable name (non-empty, no "=" and
// no NUL). Fixed values in Set are not consulted: they are applied after the
// request's and win.
func (e *Env) Allowed(name string) bool {
	if e == nil || !validEnvName(name) {
		return false
	}
	for _, g := range e.Allow {
		if Glob(g, name) {
			return true
		}
	}
	return false
}

// validEnvName accepts what execve can carry as a name: non-empty, no '=' or NUL.
func validEnvName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "=\x00")
}
