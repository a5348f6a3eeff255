package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
		t.Fatal(err)
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	bin1, bin2, other := filepath.Join(dir, "bin1"), filepath.Join(dir, "bin2"), filepath.Join(dir, "other")
	writeFile(t, filepath.Join(bin1, "tool"), 0o755)
	writeFile(t, filepath.Join(bin2, "tool"), 0o755)      // shadowed by bin1
	writeFile(t, filepath.Join(bin1, "noexec"), 0o644)    // not executable: skipped
	writeFile(t, filepath.Join(bin2, "noexec"), 0o755)    // found here instead
	writeFile(t, filepath.Join(bin1, "plainfile"), 0o644) // never executable
	writeFile(t, filepath.Join(other, "outside"), 0o755)  // outside the exec roots
	if err := os.Mkdir(filepath.Join(bin1, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(other, "outside"), filepath.Join(bin1, "link")); err != nil {
		t.Fatal(err)
	}
	src := fmt.Sprintf(`version: 1
path: [%[1]s, %[2]s]
defaults:
  filesystem: {read: [%[3]s], exec: [%[1]s, %[2]s]}
tools:
  tool: {}
  noexec: {}
  abs: {exec: %[1]s/tool}
  missing: {}
  plainfile: {}
  adir: {}
  link: {}
  outside: {exec: %[4]s/outside}
  wide: {exec: %[4]s/outside, filesystem: {exec+: [%[4]s]}}
`, bin1, bin2, dir, other)
	p := mustParse(t, src)
	if err := Resolve(p); err != nil {
		t.Fatalf("Resolve with no required tools: %v", err)
	}
	want := map[string]string{
		"tool": bin1 + "/tool", "noexec": bin2 + "/noexec", "abs": bin1 + "/tool", "wide": other + "/outside",
	}
	wantErr := map[string]string{
		"missing":   `tool missing: "missing" was not found in ` + bin1 + ":" + bin2,
		"plainfile": `tool plainfile: "plainfile" was not found in ` + bin1 + ":" + bin2 + " (" + bin1 + "/plainfile: not executable (mode -rw-r--r--))",
		"adir":      `tool adir: "adir" was not found in ` + bin1 + ":" + bin2 + " (" + bin1 + "/adir: not a regular file)",
		"link":      `tool link: "link" was found at ` + bin1 + "/link (" + other + "/outside), which is outside every exec root of the tool (" + bin1 + ", " + bin2 + ")",
		"outside":   `tool outside: "` + other + `/outside" was found at ` + other + "/outside (" + other + "/outside), which is outside every exec root of the tool (" + bin1 + ", " + bin2 + ")",
	}
	for _, tl := range p.Tools {
		if w, ok := want[tl.Name]; ok {
			if tl.Path != w || tl.ResolveError != nil {
				t.Errorf("%s: Path %q err %v, want %q", tl.Name, tl.Path, tl.ResolveError, w)
			}
			continue
		}
		if tl.Path != "" || tl.ResolveError == nil || tl.ResolveError.Error() != wantErr[tl.Name] {
			t.Errorf("%s: Path %q err %v\nwant err %s", tl.Name, tl.Path, tl.ResolveError, wantErr[tl.Name])
		}
	}
	m, _ := p.Tool("missing")
	var re *ResolveError
	if !errors.As(m.ResolveError, &re) || !errors.Is(m.ResolveError, fs.ErrNotExist) || len(re.Tried) != 2 {
		t.Errorf("missing: %#v", m.ResolveError)
	}
	o, _ := p.Tool("outside")
	if !errors.Is(o.ResolveError, fs.ErrPermission) {
		t.Errorf("outside: %v does not match fs.ErrPermission", o.ResolveError)
	}

	// A required tool that is missing makes Resolve fail, naming file, line and tool.
	p = mustParse(t, strings.Replace(src, "missing: {}", "missing: {required: true}", 1))
	err := Resolve(p)
	wantReq := fmt.Sprintf(`p.yaml:9:3: tools.missing: required tool is unusable: tool missing: "missing" was not found in %s:%s`, bin1, bin2)
	if err == nil || err.Error() != wantReq {
		t.Fatalf("Resolve = %v\nwant %s", err, wantReq)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("required error does not wrap fs.ErrNotExist")
	}
	if tl, _ := p.Tool("tool"); tl.Path != bin1+"/tool" {
		t.Errorf("other tools not resolved when one required tool fails: %q", tl.Path)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(file, []byte(base+"  sh: {required: true}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skipf("needs /bin/sh: %v", err)
	}
	p, err := Load(file, Options{Workspace: dir})
	if err != nil {
		t.Fatal(err)
	}
	sh, _ := p.Tool("sh")
	if sh.Path == "" || sh.ResolveError != nil || p.Source != file || p.Workspace != dir {
		t.Errorf("sh %q %v source %q workspace %q", sh.Path, sh.ResolveError, p.Source, p.Workspace)
	}
	if _, err := Load(filepath.Join(dir, "nope.yaml"), Options{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing file: %v", err)
	}
	// Load fills empty Options from the host: ${WORKSPACE} is the current directory.
	if err := os.WriteFile(file, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err = Load(file, Options{})
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if p.Workspace != wd {
		t.Errorf("Workspace = %q, want the current directory %q", p.Workspace, wd)
	}
}

// ResolveTools looks up the named tools and the required ones only; the others are
// left unresolved with a reason (ErrNotResolved), and a required tool that is
// unusable is still an error. Control: Resolve finds the tool ResolveTools left.
func TestResolveTools(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	writeFile(t, filepath.Join(bin, "one"), 0o755)
	writeFile(t, filepath.Join(bin, "two"), 0o755)
	src := fmt.Sprintf(`version: 1
path: [%[1]s]
defaults:
  filesystem: {exec: [%[1]s]}
tools:
  one: {}
  two: {}
  gone: {required: true}
`, bin)
	p := mustParse(t, src)
	err := ResolveTools(p, "one", "nosuchtool")
	if err == nil || !strings.Contains(err.Error(), "tools.gone") {
		t.Errorf("the required tool's failure: got %v", err)
	}
	one, _ := p.Tool("one")
	two, _ := p.Tool("two")
	if one.Path != filepath.Join(bin, "one") || one.ResolveError != nil {
		t.Errorf("one: path %q, error %v", one.Path, one.ResolveError)
	}
	if two.Path != "" || !errors.Is(two.ResolveError, ErrNotResolved) {
		t.Errorf("two, not asked for: path %q, error %v", two.Path, two.ResolveError)
	}
	_ = Resolve(p)
	if two.Path != filepath.Join(bin, "two") || two.ResolveError != nil {
		t.Errorf("control: Resolve left two at %q, %v", two.Path, two.ResolveError)
	}
}
