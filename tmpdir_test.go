package agentexec_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/configs"
	"github.com/agentexec/agentexec/policy"
)

// tmpPolicy grants ${TMPDIR} (and, for reading, its parent: only the directory's
// own mode keeps other runtimes' tools out then) and sets TMPDIR for the tools.
func tmpPolicy(t *testing.T, tmpdir string) *policy.Policy {
	t.Helper()
	ws := t.TempDir()
	y := fmt.Sprintf(`version: 1
defaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/null, "${WORKSPACE}", %q, "${TMPDIR}"]
    write: ["${TMPDIR}", /dev/null]
    exec: [/usr, /bin, /lib, /lib64]
  env:
    set:
      PATH: /usr/bin:/bin
      TMPDIR: ${TMPDIR}
  enforcement: {landlock: require, cgroup: best_effort}
tools:
  sh: {exec: /bin/sh}
`, os.TempDir())
	p, err := policy.Parse("tmp.yaml", []byte(y), policy.Options{Workspace: ws, Home: "/root", TmpDir: tmpdir, CPUs: runtime.NumCPU()})
	if err != nil {
		t.Fatal(err)
	}
	if err := policy.Resolve(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func tmpSh(t *testing.T, rt *agentexec.Runtime, script string) agentexec.Result {
	t.Helper()
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "sh", Args: []string{"-c", script}})
	if err != nil {
		t.Fatalf("sh -c %q: %v", script, err)
	}
	return r
}

// Without Options.TmpDir every runtime has a ${TMPDIR} of its own, even two started
// with one Policy (which stays as it was): mode 0700, owned by the tools' identity,
// the tools' TMPDIR, out of reach of the other runtime's tools, gone after Close.
func TestPrivateTmpDir(t *testing.T) {
	p := tmpPolicy(t, "")
	rtA, rtB := newRuntime(t, p), newRuntime(t, p)
	dirA, dirB := rtA.Policy().TmpDir, rtB.Policy().TmpDir
	if p.TmpDir != policy.TmpDirPlaceholder || !rtA.Policy().PrivateTmp {
		t.Fatalf("policy tmpdir %s, runtime's private %v", p.TmpDir, rtA.Policy().PrivateTmp)
	}
	if dirA == dirB || dirA == policy.TmpDirPlaceholder || dirB == policy.TmpDirPlaceholder {
		t.Fatalf("tmpdirs %s and %s", dirA, dirB)
	}
	for _, dir := range []string{dirA, dirB} {
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if !fi.IsDir() || fi.Mode().Perm() != 0o700 || filepath.Dir(dir) != filepath.Clean(os.TempDir()) {
			t.Errorf("%s: mode %v, want a directory with mode 0700 in %s", dir, fi.Mode(), os.TempDir())
		}
		if os.Geteuid() == 0 && st.Uid < agentexec.ToolIDBase {
			t.Errorf("%s: owner uid %d, want the tools' identity (from %d)", dir, st.Uid, agentexec.ToolIDBase)
		}
	}

	r := tmpSh(t, rtA, `echo "$TMPDIR"; echo secret > "$TMPDIR/s" && cat "$TMPDIR/s"`)
	if want := dirA + "\nsecret\n"; string(r.Stdout) != want || r.ExitCode != 0 {
		t.Fatalf("A: stdout %q stderr %q exit %d, want %q", r.Stdout, r.Stderr, r.ExitCode, want)
	}
	r = tmpSh(t, rtB, fmt.Sprintf(`echo "$TMPDIR"; echo mine > "$TMPDIR/m" && cat "$TMPDIR/m"; cat %[1]s/s; ls %[1]s; echo x > %[1]s/w`, dirA))
	if want := dirB + "\nmine\n"; string(r.Stdout) != want {
		t.Errorf("B: stdout %q, want %q (nothing of A's)", r.Stdout, want)
	}
	if n := strings.Count(string(r.Stderr), "Permission denied"); n != 3 {
		t.Errorf("B: stderr %q, want 3 refusals (read, list, write)", r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(dirA, "w")); err == nil {
		t.Errorf("B wrote into A's tmpdir")
	}

	if err := rtA.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dirA); !os.IsNotExist(err) {
		t.Errorf("A's tmpdir after Close: %v", err)
	}
	if _, err := os.Stat(dirB); err != nil {
		t.Errorf("B's tmpdir after A's Close: %v", err)
	}
	if err := rtB.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dirB); !os.IsNotExist(err) {
		t.Errorf("B's tmpdir after Close: %v", err)
	}
}

// A caller that sets Options.TmpDir gets that directory, shared and kept.
func TestExplicitTmpDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	p := tmpPolicy(t, dir)
	rt := newRuntime(t, p)
	if rt.Policy().TmpDir != dir || rt.Policy().PrivateTmp {
		t.Fatalf("tmpdir %s private %v, want %s, not private", rt.Policy().TmpDir, rt.Policy().PrivateTmp, dir)
	}
	if r := tmpSh(t, rt, `echo "$TMPDIR"; echo kept > "$TMPDIR/k"`); string(r.Stdout) != dir+"\n" || r.ExitCode != 0 {
		t.Fatalf("stdout %q stderr %q exit %d", r.Stdout, r.Stderr, r.ExitCode)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "k")); err != nil || string(b) != "kept\n" {
		t.Errorf("after Close: %q, %v", b, err)
	}
}

// configs/agent.yaml sets TMPDIR: ${TMPDIR}: its tools get the runtime's own
// directory, which they can write.
func TestAgentPolicyTmpDir(t *testing.T) {
	ws := t.TempDir()
	data, err := configs.FS.ReadFile("agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.LoadBytes("agent.yaml", data, policy.Options{Workspace: ws, Home: "/root", CPUs: runtime.NumCPU()})
	if err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t, p)
	dir := rt.Policy().TmpDir
	if !strings.HasPrefix(dir, filepath.Clean(os.TempDir())+"/") {
		t.Fatalf("tmpdir %s", dir)
	}
	r := tmpSh(t, rt, `echo "$TMPDIR"; echo t > "$TMPDIR/t" && cat "$TMPDIR/t"`)
	if want := dir + "\nt\n"; string(r.Stdout) != want || r.ExitCode != 0 {
		t.Fatalf("stdout %q stderr %q exit %d, want %q", r.Stdout, r.Stderr, r.ExitCode, want)
	}
}

// agentexec check shows the tmpdir plan: private (the placeholder in the roots),
// a running runtime's own directory, or the caller's.
func TestCheckTmpDir(t *testing.T) {
	p := tmpPolicy(t, "")
	r := agentexec.Check(p)
	if td := r.TmpDir; !td.Private || !td.Used || td.Path != policy.TmpDirPlaceholder || td.Base != os.TempDir() {
		t.Errorf("private: %+v", td)
	}
	var text strings.Builder
	r.WriteText(&text)
	if want := "tmpdir: private: each runtime makes its own under " + os.TempDir(); !strings.Contains(text.String(), want) {
		t.Errorf("text lacks %q:\n%s", want, text.String())
	}
	q, err := p.WithTmpDir("/run/x")
	if err != nil {
		t.Fatal(err)
	}
	text.Reset()
	agentexec.Check(q).WriteText(&text)
	if want := "tmpdir: private: /run/x (this runtime's own"; !strings.Contains(text.String(), want) {
		t.Errorf("text lacks %q:\n%s", want, text.String())
	}
	if td := agentexec.Check(tmpPolicy(t, "/scratch")).TmpDir; td.Private || td.Path != "/scratch" {
		t.Errorf("explicit: %+v", td)
	}
}

// Tools that may write the private ${TMPDIR} get it as TMPDIR even when the policy
// does not set it (mktemp would use /tmp otherwise), unless requests may set it.
func TestPrivateTmpDirIsToolsTMPDIR(t *testing.T) {
	ws := t.TempDir()
	y := `version: 1
defaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc, /dev/null, "${WORKSPACE}", "${TMPDIR}"]
    write: ["${TMPDIR}", /dev/null]
    exec: [/usr, /bin, /lib, /lib64]
  env: {set: {PATH: /usr/bin:/bin}}
  enforcement: {landlock: require, cgroup: best_effort}
tools:
  sh: {exec: /bin/sh}
  ro: {exec: /bin/sh, filesystem: {write: [/dev/null]}}
  asks: {exec: /bin/sh, env: {allow: [TMPDIR]}}
`
	p, err := policy.Parse("tmp.yaml", []byte(y), policy.Options{Workspace: ws, CPUs: runtime.NumCPU()})
	if err != nil {
		t.Fatal(err)
	}
	if err := policy.Resolve(p); err != nil {
		t.Fatal(err)
	}
	rt := newRuntime(t, p)
	dir := rt.Policy().TmpDir
	r := tmpSh(t, rt, `echo "$TMPDIR"; d=$(mktemp -d) && echo "$d"`)
	lines := strings.Split(strings.TrimSpace(string(r.Stdout)), "\n")
	if len(lines) != 2 || lines[0] != dir || filepath.Dir(lines[1]) != dir {
		t.Errorf("stdout %q stderr %q, want TMPDIR %s and a mktemp directory in it", r.Stdout, r.Stderr, dir)
	}
	// ro cannot write it; asks takes TMPDIR from the request.
	for _, c := range []struct {
		tool string
		env  map[string]string
		want string
	}{{"ro", nil, ""}, {"asks", map[string]string{"TMPDIR": "/elsewhere"}, "/elsewhere"}} {
		res, err := rt.Run(context.Background(), agentexec.Request{Tool: c.tool, Args: []string{"-c", `echo "$TMPDIR"`}, Env: c.env})
		if err != nil || string(res.Stdout) != c.want+"\n" {
			t.Errorf("%s: TMPDIR %q, %v; want %q", c.tool, res.Stdout, err, c.want)
		}
	}
	if pt, _ := p.Tool("sh"); len(pt.Env.Set) != 1 {
		t.Errorf("the caller's policy changed: %v", pt.Env.Set)
	}
}
