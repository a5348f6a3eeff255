package policy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/agentexec/agentexec/internal/yamlnode"
)

// FuzzParse feeds arbitrary bytes to the parser. It calls parse directly, without
// Parse's recover, so a panic fails the fuzz run. The seed corpus (the example
// policies and a set of malformed ones) runs in every `go test`.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "configs", "*.yaml"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		base,
		"",
		"version: 1",
		"version: 1\ntools: {a: {exec: /x, args: {allow: ['a|b *', '?'], deny: ['-c']}}}\n",
		"version: 1\ndefaults: &d {limits: {memory: 1G}}\ntools:\n  a: *d\n",
		"version: 1\ntools: {a: {<<: {hot: true}}}\n",
		"version: 1\ntools: {a: {filesystem: {read+: [/x], write+: [/x/y]}}}\n",
		"version: 1\ntools: {a: {env: {set+: {A: '${HOME}'}, allow+: [X*]}}}\n",
		"version: 1\ntools: {a: {user: {uid: 1, gid: 2, groups: [3]}}}\n",
		"version: 1\nspawn_template_syscalls: {create: 1, spawn: 1}\ntools: {a: {}}\n",
		"[1, 2]\n",
		"version: 1\n---\nversion: 1\n",
		"version: 1\ntools: {a: {limits: {cpu: 150%, memory: 1.5GiB, pids: max, timeout: 1m}}}\n",
		"version: 1\ntools: {? [a]: b}\n",
		"version: 1\n\ttools: {}\n",
		"version: !!binary gIGC\n",
		// YAML syntax errors of the kinds yaml.v3 reports a line early or without a
		// column (issue 19): a bad indent, a key without ':', an unclosed quote or flow.
		"version: 1\ntools:\n  a:\n    exec: /x\n   hot: true\n",
		"version: 1\ntools:\n  a:\n    exec /x\n    hot: true\n",
		"version: 1\ntools: {a: {exec: '/x}}\n",
		"version: 1\ntools: {a: {exec: /x}\n",
		"version: 1\ntools: [a, b\n",
		"version: 1\ntools: a: b\n",
		"version: 1\ntools:\n\t a: {}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		opts := Options{Workspace: "/w", Home: "/h", CPUs: 2}
		p, err := parse("f.yaml", data, opts)
		p2, err2 := parse("f.yaml", data, opts)
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("parse is not deterministic: %v / %v", err, err2)
		}
		if err != nil {
			if p != nil {
				t.Fatalf("policy returned with error %v", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error is not a *FieldError: %v", err)
			}
			// Every position is inside the file (or just past its end).
			// Lines as the YAML parser counts them (NEL, LS and PS end one too).
			lines := yamlnode.Lines(data)
			for _, e := range fuzzUnjoin(err) {
				if errors.As(e, &fe) && (fe.Line < 0 || fe.Line > lines+1 || fe.Col < 0) {
					t.Fatalf("error outside the file (%d lines): %v", lines, fe)
				}
			}
			return
		}
		if len(p.Tools) == 0 || len(p2.Tools) != len(p.Tools) {
			t.Fatalf("valid policy with %d tools", len(p.Tools))
		}
		inProfiles := map[*Profile]bool{}
		for _, pr := range p.Profiles {
			inProfiles[pr] = true
		}
		for _, tl := range p.Tools {
			if tl.Profile == nil || !inProfiles[tl.Profile] {
				t.Fatalf("tool %s has a profile outside p.Profiles", tl.Name)
			}
			for _, w := range tl.Profile.FS.Write {
				ok := false
				for _, r := range tl.Profile.FS.Read {
					ok = ok || Beneath(w, r)
				}
				if !ok {
					t.Fatalf("tool %s: write root %s outside the read roots %v", tl.Name, w, tl.Profile.FS.Read)
				}
			}
			for _, path := range append(append(append([]string{}, tl.Profile.FS.Read...), tl.Profile.FS.Write...), tl.Profile.FS.Exec...) {
				if !filepath.IsAbs(path) || filepath.Clean(path) != path {
					t.Fatalf("tool %s: path %q not absolute and clean", tl.Name, path)
				}
			}
			_ = tl.Args.Check([]string{"a", "b", "-c"})
			_ = tl.Env.Allowed("X")
		}
	})
}

// fuzzUnjoin flattens joined errors.
func fuzzUnjoin(err error) []error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range u.Unwrap() {
			out = append(out, fuzzUnjoin(e)...)
		}
		return out
	}
	return []error{err}
}
