package yamlnode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// YAML syntax errors point at the offending line and column (issue 19), where
// yaml.v3 alone prints the line of the enclosing construct (0-based for parser
// errors) and no column. Each case names yaml.v3's own line, as the control: the
// scan must do better than it.
func TestSyntaxErrorPosition(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src      string
		yamlLine string // what yaml.v3 alone says ("" for no line)
		at       string // LINE:COL we report
		msg      string // a substring of the message
	}{
		{"tab indentation", "version: 1\ntools:\n\t a: {}\n", "3", "3:1", "a tab in the indentation"},
		{"tab after a key", "version: 1\ntools:\n  a:\n\thot: true\n", "4", "4:1", "YAML indents with spaces only"},
		{"unclosed single quote", "version: 1\ntools:\n  a:\n    exec: '/x\n    hot: true\n", "4", "4:11", "the quoted string that begins here is never closed"},
		{"unclosed quote on line 1", "a: 'it''s\nb: 2\n", "3", "1:4", "never closed"},
		{"unclosed double quote in flow", "version: 1\ntools: {a: {exec: \"/x}}\n", "2", "2:19", "never closed"},
		{"bad indentation", "version: 1\ntools:\n  a:\n    exec: /x\n   hot: true\n", "2", "5:4", "indented 3 spaces, which matches no enclosing block (they are indented 4 and 2 spaces)"},
		{"dedent to no level", "a:\n  b:\n    c: 1\n  d: 2\n e: 3\n", "4", "5:2", "indented 1 space"},
		{"bad indentation in a list item", "steps:\n  - name: a\n    run: [x]\n   env: {}\n", "1", "4:4", "matches no enclosing block"},
		{"stray colon", "version: 1\ntools: a: b\n", "2", "2:9", "a second ': ' in the value"},
		{"stray colon on line 1", "a: b: c: d\n", "", "1:5", "quote the value"},
		{"key without colon", "version: 1\ntools:\n  a:\n    exec /x\n    hot: true\n", "5", "5:8", "continues the value that begins at 4:5"},
		{"over-indented key", "version: 1\n  tools: {}\n", "2", "2:8", "continues the value that begins at 1:10"},
		{"over-indented sibling", "steps:\n  - name: a\n    run: [x]\n  - name: b\n     run: [y]\n", "5", "5:9", "continues the value that begins at 4:11"},
		{"plain line in a mapping", "x:\n  a: 1\n  a b\n  c: 2\n", "3", "3:3", "a key without ':'"},
		{"key in a list", "a:\n  - x\n  y: 1\n", "1", "3:3", "expected a '- ' item"},
		{"item in a mapping", "a: b\n- c\n", "1", "2:1", "where the mapping that begins at line 1 expects a key"},
		{"after a block scalar", "a: |\n  x\n b: 1\n", "2", "3:2", "matches no enclosing block"},
		{"unclosed flow list", "policy: p\nsteps:\n  - name: [a\n", "2", "3:11", "the '[' here is never closed"},
		{"unclosed flow mapping", "version: 1\ntools: {a: {exec: /x}\n", "1", "2:8", "the '{' here is never closed"},
		{"unclosed flow at the end", "version: 1\ntools:\n  cat: {\n", "3", "3:8", "never closed"},
		{"extra closing bracket", "a: [1, 2]]\n", "", "1:10", "this ']' closes nothing"},
		{"character that starts no token", "a: 1\nb: @x\n", "2", "2:4", "'@' cannot begin a plain value"},
		{"unknown alias", "a: &x 1\nb: *y\n", "", "2:4", "no anchor &y comes before this alias"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n yaml.Node
			yerr := yaml.Unmarshal([]byte(tc.src), &n)
			if yerr == nil {
				t.Fatalf("yaml.v3 accepts %q", tc.src)
			}
			var want string
			if tc.yamlLine != "" {
				want = "yaml: line " + tc.yamlLine + ": "
			}
			if !strings.HasPrefix(yerr.Error(), want) || (tc.yamlLine == "" && strings.HasPrefix(yerr.Error(), "yaml: line ")) {
				t.Errorf("control: yaml.v3 says %q, want line %q", yerr, tc.yamlLine)
			}
			d := &Decoder{File: "f.yaml"}
			_, err := d.Single([]byte(tc.src), "a thing")
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Single = %v, want a *FieldError", err)
			}
			if got := fmt.Sprintf("%d:%d", fe.Line, fe.Col); got != tc.at {
				t.Errorf("at %s, want %s: %v", got, tc.at, err)
			}
			if !strings.Contains(fe.Msg, tc.msg) || !strings.HasPrefix(fe.Msg, "YAML syntax error: ") {
				t.Errorf("message %q lacks %q", fe.Msg, tc.msg)
			}
			if !errors.Is(err, yerr) && err.(*FieldError).Err == nil {
				t.Errorf("the cause is lost")
			}
		})
	}
}

// Where the scan finds nothing that fits yaml.v3's complaint, yaml.v3's line is
// kept, without a column: never a made-up position.
func TestSyntaxErrorFallback(t *testing.T) {
	line, col, msg := located([]byte("a: 1\n"), "yaml: line 7: some problem the scan does not know")
	if line != 7 || col != 0 || msg != "YAML syntax error: some problem the scan does not know" {
		t.Errorf("located = %d:%d %q", line, col, msg)
	}
}

// The structure check finds no problem in valid YAML: the repository's policies
// and job files, and the shapes they use (so that a real error is never blamed on
// a line before it).
func TestStructureCheckAcceptsValidYAML(t *testing.T) {
	srcs := map[string]string{
		"compact list":         "a:\n- x\n- y\nb: 1\n",
		"nested lists":         "a:\n  - - x\n    - y\n  - z\n",
		"item mappings":        "steps:\n  - name: a\n    run: [x, y]\n    env:\n      A: b\n  - name: b\n    sh: |\n      echo hi\n        indented: still text\n    needs: [a]\n",
		"multi-line plain":     "a: this is\n  one value\nb: 2\n",
		"multi-line quoted":    "a: 'one\n  two'\nb: \"x\\\"y\n  z\"\n",
		"multi-line flow":      "a: [1,\n  2,\n     3]\nb: {c: 1,\n  d: 2}\n",
		"comments":             "# top\na: 1 # one\n  # indented comment\nb: '#not' # c\n",
		"anchors and tags":     "a: &x\n  b: 1\nc: *x\nd: !!str 5\ne: &y [1]\n",
		"documents":            "a: 1\n---\n  b: 2\n",
		"quoted keys":          "\"a: b\": 1\n'c': [d]\n",
		"colon in values":      "url: http://x.org:80/a\ntime: 12:30\n",
		"block scalar in item": "- |\n  text\n- >-\n  more\n",
		"scalar document":      "just text\n",
		"list document":        "- a\n- b: 1\n  c: 2\n",
	}
	files, _ := filepath.Glob("../../configs/*.yaml")
	jobs, _ := filepath.Glob("../../configs/jobs/*.yaml")
	for _, f := range append(files, jobs...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		srcs[f] = string(b)
	}
	if len(srcs) < 17 {
		t.Fatalf("only %d sources: the repository's configs are missing", len(srcs))
	}
	for name, src := range srcs {
		var n yaml.Node
		if err := yaml.Unmarshal([]byte(src), &n); err != nil {
			t.Errorf("%s: not valid YAML for yaml.v3: %v", name, err)
			continue
		}
		lx := lex([]byte(src))
		if p := checkStructure(lx.lines); p.line != 0 {
			t.Errorf("%s: a problem found in valid YAML at %d:%d: %s", name, p.line, p.col, p.note)
		}
		if lx.quote.line != 0 || lx.flow.line != 0 || lx.stray.line != 0 {
			t.Errorf("%s: the lexer sees an unclosed quote %v, flow %v or stray bracket %v", name, lx.quote, lx.flow, lx.stray)
		}
	}
}

// The scan never panics, and every position it gives is inside the file.
func FuzzSyntaxError(f *testing.F) {
	for _, s := range []string{
		"version: 1\ntools:\n\t a: {}\n", "a: 'it''s\nb: 2\n", "version: 1\ntools:\n  a:\n    exec: /x\n   hot: true\n",
		"version: 1\ntools: a: b\n", "a: [1, 2]]\n", "a: &x 1\nb: *y\n", "a: |\n  x\n b: 1\n", "- - a\n  - b\n c\n",
		"a: \"x\\\n", "{a: [b}\n", "? a\n: b\n  c: d\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var n yaml.Node
		err := yaml.Unmarshal(data, &n)
		if err == nil {
			return
		}
		d := &Decoder{File: "f"}
		e := d.SyntaxErrorIn(data, err).(*FieldError)
		lines := strings.Count(yamlLines.Replace(string(data)), "\n") + 1
		if e.Line < 0 || e.Line > lines+1 || e.Col < 0 {
			t.Fatalf("position %d:%d outside the file (%d lines): %v", e.Line, e.Col, lines, e)
		}
		if e.Col > 0 {
			ls := strings.Split(yamlLines.Replace(string(data)), "\n")
			if e.Line < 1 || e.Line > len(ls) || e.Col > len(ls[e.Line-1])+1 {
				t.Fatalf("column %d:%d outside its line: %v", e.Line, e.Col, e)
			}
		}
	})
}
