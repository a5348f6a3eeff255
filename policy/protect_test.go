package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// filesystem.protect is a path list like read/write/exec: defaults, replaced or
// extended (protect+) per tool, sorted, and part of the profile.
func TestProtectMerge(t *testing.T) {
	p := mustParse(t, `version: 1
defaults:
  filesystem:
    read: [/usr, "${WORKSPACE}"]
    write: ["${WORKSPACE}"]
    exec: [/usr]
    protect: ["${WORKSPACE}/.vscode", "${WORKSPACE}/.envrc"]
tools:
  inherit: {}
  extend: {filesystem: {protect+: ["${HOME}/.config/x"]}}
  replace: {filesystem: {protect: []}}
`)
	want := map[string][]string{
		"inherit": {"/work/ws/.envrc", "/work/ws/.vscode"},
		"extend":  {"/home/u/.config/x", "/work/ws/.envrc", "/work/ws/.vscode"},
		"replace": nil,
	}
	profiles := map[*Profile]bool{}
	for name, w := range want {
		tl, ok := p.Tool(name)
		if !ok {
			t.Fatalf("no tool %s", name)
		}
		if !slices.Equal(tl.Profile.FS.Protect, w) {
			t.Errorf("%s: protect %q, want %q", name, tl.Profile.FS.Protect, w)
		}
		profiles[tl.Profile] = true
	}
	if len(profiles) != 3 {
		t.Errorf("tools with different protect lists share profiles: %d profiles", len(profiles))
	}
}

// Bad protect: input is an error at its line and column, naming the field.
func TestProtectErrors(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"version: 1\ndefaults:\n  filesystem:\n    protect: [relative/path]\ntools: {cat: {}}\n",
			`p.yaml:4:15: defaults.filesystem.protect[0]: "relative/path" is not an absolute path`},
		{"version: 1\ndefaults:\n  filesystem:\n    protect: /ws/.envrc\ntools: {cat: {}}\n",
			`p.yaml:4:14: defaults.filesystem.protect: expected a list, got "/ws/.envrc"`},
		{"version: 1\ndefaults:\n  filesystem:\n    protect: [{a: b}]\ntools: {cat: {}}\n",
			`p.yaml:4:15: defaults.filesystem.protect[0]: expected a string, got a mapping`},
		{"version: 1\ntools:\n  cat: {filesystem: {protect: [\"$HOME/x\"]}}\n",
			`p.yaml:3:32: tools.cat.filesystem.protect[0]: "$HOME/x": a bare $ is not expanded; write ${WORKSPACE}, ${HOME} or ${TMPDIR} (or $$ for a literal $)`},
		{"version: 1\ntools:\n  cat: {filesystem: {protekt: [/x]}}\n",
			`p.yaml:3:22: tools.cat.filesystem.protekt: unknown field "protekt" (did you mean "protect"?)`},
	} {
		_, err := Parse("p.yaml", []byte(c.src), testOpts)
		if err == nil {
			t.Errorf("%q: no error", c.src)
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Line == 0 {
			t.Errorf("%q: %v is not a located *FieldError", c.src, err)
		}
		if got := err.Error(); !strings.Contains(got, c.want) {
			t.Errorf("%q:\n got %s\nwant %s", c.src, got, c.want)
		}
	}
}
