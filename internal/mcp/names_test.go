package mcp

import (
	"slices"
	"strings"
	"testing"
)

func TestToolNames(t *testing.T) {
	long := strings.Repeat("a", 70)
	for _, tc := range []struct {
		name  string
		in    []string
		shell bool
		want  []string
	}{
		{"valid kept", []string{"rg", "git", "python3", "x-y_z"}, false, []string{"rg", "git", "python3", "x-y_z"}},
		{"sanitized", []string{"g++", "clang.format", "ünï"}, false, []string{"g__", "clang_format", "_n_"}},
		{"valid names claim first", []string{"a.b", "a_b"}, false, []string{"a_b_2", "a_b"}},
		{"collisions in order", []string{"a.b", "a+b", "a b"}, false, []string{"a_b", "a_b_2", "a_b_3"}},
		{"shell tool", []string{"sh"}, true, []string{"sh", "shell"}},
		{"shell name taken by a policy tool", []string{"shell", "sh"}, true, []string{"shell", "sh", "shell_2"}},
		{"too long", []string{long, long + "."}, false, []string{long[:64], long[:62] + "_2"}},
		{"empty", []string{""}, false, []string{"tool"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := toolNames(tc.in, tc.shell)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("toolNames(%q) = %q, want %q", tc.in, got, tc.want)
			}
			seen := map[string]bool{}
			for _, n := range got {
				if !validName(n) {
					t.Errorf("%q is not a valid MCP tool name", n)
				}
				if seen[n] {
					t.Errorf("%q given twice", n)
				}
				seen[n] = true
			}
		})
	}
}

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"rg": true, "A-z_09": true, strings.Repeat("x", 64): true,
		"": false, strings.Repeat("x", 65): false, "a.b": false, "a/b": false, "a b": false, "é": false,
	} {
		if got := validName(name); got != want {
			t.Errorf("validName(%q) = %v, want %v", name, got, want)
		}
	}
}
