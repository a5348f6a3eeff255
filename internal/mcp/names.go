package mcp

import (
	"fmt"
	"strings"
)

// maxNameLen is the longest tool name the strictest MCP clients accept.
const maxNameLen = 64

// ShellToolName is the MCP name of the shell tool (a script run by the policy's
// shell), unless a policy tool already has that name.
const ShellToolName = "shell"

// validName reports whether name matches [A-Za-z0-9_-]{1,64}.
func validName(name string) bool {
	if name == "" || len(name) > maxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !nameByte(name[i]) {
			return false
		}
	}
	return true
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// sanitize maps a name onto [A-Za-z0-9_-]{1,64}: every other character (each
// rune, not each byte) becomes "_", and the result is cut to 64 bytes.
func sanitize(name string) string {
	var b strings.Builder
	for _, r := range name {
		if r < 0x80 && nameByte(byte(r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	if s == "" {
		s = "tool"
	}
	if len(s) > maxNameLen {
		s = s[:maxNameLen]
	}
	return s
}

// toolNames gives each policy tool (in policy order) its MCP name, and the shell
// tool its name when shell is true (returned as the last element). The rule, in
// docs/mcp.md:
//
//  1. A policy name that is already valid is kept as it is.
//  2. Any other name is sanitized (each character outside [A-Za-z0-9_-] becomes
//     "_", cut to 64 bytes).
//  3. A sanitized name (or the shell tool's "shell") that is taken gets the first
//     free suffix "_2", "_3", … (its base cut so that the whole stays within 64).
//
// Valid names are claimed before any sanitized one, so that renaming never moves
// a tool whose name was fine; sanitized names are then given in policy order, the
// shell tool last.
func toolNames(policyNames []string, shell bool) []string {
	out := make([]string, len(policyNames), len(policyNames)+1)
	taken := map[string]bool{}
	for i, n := range policyNames {
		if validName(n) {
			out[i] = n
			taken[n] = true
		}
	}
	claim := func(base string) string {
		if !taken[base] {
			taken[base] = true
			return base
		}
		for k := 2; ; k++ {
			suffix := fmt.Sprintf("_%d", k)
			b := base
			if len(b)+len(suffix) > maxNameLen {
				b = b[:maxNameLen-len(suffix)]
			}
			if c := b + suffix; !taken[c] {
				taken[c] = true
				return c
			}
		}
	}
	for i, n := range policyNames {
		if out[i] == "" {
			out[i] = claim(sanitize(n))
		}
	}
	if shell {
		out = append(out, claim(ShellToolName))
	}
	return out
}
