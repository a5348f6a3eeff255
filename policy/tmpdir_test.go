package policy

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

const tmpPolicy = `version: 1
workspace: /w
path: ["${TMPDIR}/bin", /usr/bin]
defaults:
  filesystem:
    read: [/usr, /zz, "${TMPDIR}"]
    write: ["${TMPDIR}/out"]
    exec: [/usr, "${TMPDIR}/bin"]
    protect: ["${TMPDIR}/out/.keep"]
  env:
    set:
      TMPDIR: ${TMPDIR}
      CACHE: "a:${TMPDIR}/cache:b"
tools:
  cat: {}
  ls: {}
  mine: {exec: "${TMPDIR}/bin/mine"}
  other: {filesystem: {read+: [/opt]}}
`

// Without Options.TmpDir, ${TMPDIR} is the placeholder, and WithTmpDir returns a
// copy in which every use (roots, protect:, path:, exec, env values) is the given
// directory, sorted again, leaving the parsed policy as it was.
func TestWithTmpDir(t *testing.T) {
	opts := Options{Home: "/h", CPUs: 2}
	p, err := Parse("p.yaml", []byte(tmpPolicy), opts)
	if err != nil {
		t.Fatal(err)
	}
	same, _ := Parse("p.yaml", []byte(tmpPolicy), opts)
	if !p.PrivateTmp || p.TmpDir != TmpDirPlaceholder || !p.UsesTmpDir() {
		t.Fatalf("private %v tmpdir %s uses %v", p.PrivateTmp, p.TmpDir, p.UsesTmpDir())
	}
	q, err := p.WithTmpDir("/var/tmp/a")
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.WithTmpDir("/run/b")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p, same) {
		t.Errorf("WithTmpDir changed the policy it was called on")
	}
	if q.TmpDir != "/var/tmp/a" || !q.PrivateTmp || q.UsesTmpDir() {
		t.Errorf("copy: tmpdir %s private %v uses %v", q.TmpDir, q.PrivateTmp, q.UsesTmpDir())
	}
	if _, err := q.WithTmpDir("/x"); err == nil {
		t.Errorf("WithTmpDir on a copy: no error")
	}
	pr := q.Profiles[0]
	for _, c := range []struct {
		name string
		got  []string
		want string
	}{
		{"read", pr.FS.Read, "/usr /var/tmp/a /zz"},
		{"write", pr.FS.Write, "/var/tmp/a/out"},
		{"exec", pr.FS.Exec, "/usr /var/tmp/a/bin"},
		{"protect", pr.FS.Protect, "/var/tmp/a/out/.keep"},
		{"path", q.Path, "/var/tmp/a/bin /usr/bin"},
		{"other's read", r.Profiles[1].FS.Read, "/opt /run/b /usr /zz"},
	} {
		if got := strings.Join(c.got, " "); got != c.want {
			t.Errorf("%s = %q, want %q", c.name, got, c.want)
		}
	}
	mine, _ := q.Tool("mine")
	if mine.Exec != "/var/tmp/a/bin/mine" {
		t.Errorf("exec = %s", mine.Exec)
	}
	if want := []EnvVar{{"TMPDIR", "/var/tmp/a"}, {"CACHE", "a:/var/tmp/a/cache:b"}}; !slices.Equal(mine.Env.Set, want) {
		t.Errorf("env = %v, want %v", mine.Env.Set, want)
	}
	// Tools point into the copy's profiles, and share them as before.
	cat, _ := q.Tool("cat")
	ls, _ := q.Tool("ls")
	other, _ := q.Tool("other")
	if cat.Profile != ls.Profile || cat.Profile != q.Profiles[0] || other.Profile != q.Profiles[1] || len(q.Profiles) != 2 {
		t.Errorf("profiles not rebuilt: %p %p %p, %d profiles", cat.Profile, ls.Profile, other.Profile, len(q.Profiles))
	}
	if pc, _ := p.Tool("cat"); pc.Profile == cat.Profile {
		t.Errorf("the copy shares a profile with the original")
	}

	// An explicit TmpDir is used as is: nothing private.
	x, err := Parse("p.yaml", []byte(tmpPolicy), Options{Home: "/h", TmpDir: "/scratch"})
	if err != nil {
		t.Fatal(err)
	}
	if x.PrivateTmp || x.TmpDir != "/scratch" || x.UsesTmpDir() || x.Profiles[0].FS.Write[0] != "/scratch/out" {
		t.Errorf("explicit: private %v tmpdir %s write %v", x.PrivateTmp, x.TmpDir, x.Profiles[0].FS.Write)
	}
	if _, err := x.WithTmpDir("/y"); err == nil {
		t.Errorf("WithTmpDir without a private ${TMPDIR}: no error")
	}
	for _, bad := range []string{"rel", "/a/../b", TmpDirPlaceholder + "/x"} {
		if _, err := p.WithTmpDir(bad); err == nil {
			t.Errorf("WithTmpDir(%q): no error", bad)
		}
	}
	// A policy that never says ${TMPDIR} does not use it.
	n, err := Parse("p.yaml", []byte("version: 1\ntools: {cat: {}}\n"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !n.PrivateTmp || n.UsesTmpDir() {
		t.Errorf("no ${TMPDIR}: private %v uses %v", n.PrivateTmp, n.UsesTmpDir())
	}
}

// A path that uses the private ${TMPDIR} must stay beneath it, so that replacing
// the placeholder gives what expanding the directory would have given.
func TestPrivateTmpDirPaths(t *testing.T) {
	for _, c := range []struct{ field, value string }{
		{"defaults.filesystem.read[0]", "${TMPDIR}/.."},
		{"defaults.filesystem.read[0]", "${TMPDIR}x"},
		{"tools.cat.exec", "${TMPDIR}/../bin/cat"},
	} {
		src := "version: 1\ndefaults:\n  filesystem: {read: [\"" + c.value + "\"]}\ntools: {cat: {}}\n"
		if c.field == "tools.cat.exec" {
			src = "version: 1\ntools: {cat: {exec: \"" + c.value + "\"}}\n"
		}
		_, err := Parse("p.yaml", []byte(src), Options{})
		if err == nil || !strings.Contains(err.Error(), c.field) || !strings.Contains(err.Error(), "a directory of each runtime's own") {
			t.Errorf("%s: err = %v", c.value, err)
		}
		// With an explicit TmpDir the same paths are ordinary ones.
		if _, err := Parse("p.yaml", []byte(src), Options{TmpDir: "/tmp"}); err != nil {
			t.Errorf("%s with TmpDir /tmp: %v", c.value, err)
		}
	}
}
