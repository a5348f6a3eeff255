package ci

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentexec/agentexec/internal/yamlnode"
	"github.com/agentexec/agentexec/policy"
)

// FuzzParseJob feeds arbitrary bytes to the job file parser (which never touches the
// host). The seeds (the example jobs and a set of malformed ones) run in every
// `go test`; `make fuzz` explores from them. Properties: no panic (Parse turns one
// into a "bug:" error, which fails here); deterministic; every problem a
// *policy.FieldError with a position inside the file; a job that parses has steps,
// each with a name and a command.
func FuzzParseJob(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "configs", "jobs", "*.yaml"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"policy: p.yaml\nsteps: [{name: a, run: [true]}]\n",
		"policy: {version: 1, tools: {sh: {exec: /bin/sh}}}\nsteps:\n  - {name: a, sh: echo}\n  - {name: b, run: [x], needs: [a]}\n",
		"policy: p.yaml\nsteps:\n  - name: a\n    run: [x]\n    limits: {output: 1MiB, memory: 1G, pids: 5, cpu: 50%}\n    timeout: 1m\n",
		"policy: p.yaml\nsteps: [{name: a, run: [x], needs: [a]}]\n",
		"policy: p.yaml\nsteps: [{name: a, run: [x]}, {name: a, run: [y]}]\n",
		"policy: p.yaml\nenv: {A: 1, A: 2}\nsteps: []\n",
		"policy: p.yaml\nsteps:\n- name: a\n\trun: [x]\n",
		"policy: &p p.yaml\nsteps: [{name: *p, run: [x]}]\n",
		"policy: p.yaml\nsteps: {a: b}\n",
		"---\n---\n", "", "[", "policy: p.yaml\nsteps:\n  - name: 'unterminated\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := Parse("job.yaml", data)
		_, err2 := Parse("job.yaml", data)
		if (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("Parse is not deterministic: %v / %v", err, err2)
		}
		if err != nil {
			if j != nil {
				t.Fatalf("job returned with error %v", err)
			}
			if strings.Contains(err.Error(), "panicked") {
				t.Fatal(err)
			}
			// Lines as the YAML parser counts them (NEL, LS and PS end one too).
			lines := yamlnode.Lines(data)
			for _, e := range unjoin(err) {
				var fe *policy.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("error is not a *policy.FieldError: %v", e)
				}
				if fe.Line < 0 || fe.Line > lines+1 || fe.Col < 0 { // +1: a node just past the end ("---")
					t.Fatalf("error outside the file (%d lines): %v", lines, fe)
				}
			}
			return
		}
		if len(j.Steps) == 0 && !strings.Contains(string(data), "steps") {
			t.Fatalf("a job without steps parsed: %q", data)
		}
		for _, s := range j.Steps {
			if s.Name == "" {
				t.Fatalf("step without a name in %q", data)
			}
		}
	})
}

func unjoin(err error) []error {
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range u.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}
