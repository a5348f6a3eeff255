package agentexec_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/templates"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// requireSpawnTemplateEnv is set in the VM tier's RFC-kernel guests (make
// vmtest-rfc): the kernel backend must be usable there, and its tests fail rather
// than skip.
const requireSpawnTemplateEnv = "AGENTEXEC_REQUIRE_SPAWN_TEMPLATE"

// requireKernelBackend skips unless this kernel has the spawn_template syscalls
// (the Linux RFC series; the VM tier's RFC kernel), naming the probe's reason.
func requireKernelBackend(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 6)
	p := templates.ProbeKernel(0, 0)
	if p.Available {
		return
	}
	if os.Getenv(requireSpawnTemplateEnv) == "1" {
		t.Fatalf("%s=1 (the VM tier's RFC kernel): the spawn_template syscalls must be usable: %s", requireSpawnTemplateEnv, p.Reason)
	}
	t.Skipf("requires the spawn_template syscalls (Linux RFC series; make vmtest-rfc): %s", p.Reason)
}

// testBackend is a template backend a test runs on: the policy that selects it and
// the backend its hot ELF tools report.
type testBackend struct {
	name string
	// hot is what a launch of a hot ELF tool reports (kernel with the kernel
	// backend; userspace otherwise). Tools that are not hot, and scripts, report
	// userspace with either.
	hot agentexec.Backend
	// policy is testPolicy for this backend.
	policy func(t testing.TB, extra string) (*policy.Policy, string)
}

// testBackends are the backends a backend-aware test runs on: the userspace one
// everywhere, the kernel one where the kernel has spawn_template (skipped with the
// probe's reason elsewhere).
func testBackends() []testBackend {
	return []testBackend{
		{name: "userspace", hot: agentexec.BackendUserspace, policy: func(t testing.TB, extra string) (*policy.Policy, string) {
			return testPolicyFull(t, "kernel_templates: off\n", extra, "require")
		}},
		{name: "kernel", hot: agentexec.BackendKernel, policy: kernelPolicy},
	}
}

// kernelPolicy is testPolicy with the kernel backend in force: kernel_templates:
// require, and `user: root` in every profile (under a root runtime tools otherwise
// run as the tool identity, and spawn_template cannot switch a child's identity, so
// the kernel backend is not used there). It skips without the backend.
func kernelPolicy(t testing.TB, extra string) (*policy.Policy, string) {
	t.Helper()
	requireKernelBackend(t)
	p, ws := testPolicyFull(t, "kernel_templates: require\n", extra, "require")
	for _, pr := range p.Profiles {
		pr.User = &policy.User{Own: true}
	}
	return p, ws
}

// A hot ELF tool launched through the runtime with the kernel backend reports it;
// tools that are not hot take the userspace path beside it.
func TestKernelBackendRuns(t *testing.T) {
	p, _ := kernelPolicy(t, "")
	rt := newRuntime(t, p)
	r := run(t, rt, "cat", "/proc/self/status")
	if r.ExitCode != 0 || r.Backend != agentexec.BackendKernel || r.Template != agentexec.TemplateHit {
		t.Fatalf("cat: exit %d backend %q template %q stderr %q exec error %q", r.ExitCode, r.Backend, r.Template, r.Stderr, r.ExecError)
	}
	if !strings.Contains(string(r.Stdout), "NoNewPrivs:\t1") {
		t.Errorf("kernel-template child lacks no_new_privs:\n%s", r.Stdout)
	}
	if r := run(t, rt, "sh", "-c", "echo hi"); r.Backend != agentexec.BackendUserspace || string(r.Stdout) != "hi\n" {
		t.Errorf("sh (not hot): backend %q stdout %q", r.Backend, r.Stdout)
	}
}

// The working directory reaches a kernel-template child as the kernel launcher's
// own (it changes directory itself; the RFC's spawn copies the caller's): the
// workspace, a subdirectory, a directory that can be searched but not read (mode
// 0111: FCHDIR would have needed it opened readable, so such launches took the
// userspace path), back again, and a directory replaced under the same path
// between launches (a renamed-away one must not be reused: its contents differ).
func TestKernelBackendWorkingDirectory(t *testing.T) {
	p, ws := kernelPolicy(t, "")
	rt := newRuntime(t, p)
	sub := filepath.Join(ws, "sub")
	searchOnly := filepath.Join(ws, "xonly")
	for dir, content := range map[string]string{ws: "top\n", sub: "sub\n", searchOnly: "xonly\n"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "here.txt"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(searchOnly, 0o111); err != nil {
		t.Fatal(err)
	}
	replace := func() {
		if err := os.Rename(sub, sub+".old"); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, "here.txt"), []byte("new sub\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		dir, want string
		backend   agentexec.Backend
		before    func()
	}{
		{"", "top\n", agentexec.BackendKernel, nil},
		{sub, "sub\n", agentexec.BackendKernel, nil},
		{sub, "sub\n", agentexec.BackendKernel, nil},
		{searchOnly, "xonly\n", agentexec.BackendKernel, nil},
		{sub, "sub\n", agentexec.BackendKernel, nil},
		{sub, "new sub\n", agentexec.BackendKernel, replace},
		{"", "top\n", agentexec.BackendKernel, nil},
	} {
		if c.before != nil {
			c.before()
		}
		r, err := rt.Run(context.Background(), agentexec.Request{Tool: "cat", Args: []string{"here.txt"}, Dir: c.dir})
		if err != nil {
			t.Fatalf("dir %q: %v", c.dir, err)
		}
		if string(r.Stdout) != c.want || r.ExitCode != 0 || r.Backend != c.backend {
			t.Errorf("cat here.txt in %q: stdout %q exit %d signal %v backend %q (%s); want %q from the %s backend",
				c.dir, r.Stdout, r.ExitCode, r.Signal, r.Backend, r.ExecError, c.want, c.backend)
		}
	}
}

// A hot ELF tool whose binary is removed, then replaced by a script, then restored:
// each launch behaves as on the userspace backend (127, the script runs, the
// binary runs) and none fails with the closed template's "bad file descriptor"; the
// restored binary is back on the tool's own backend.
func TestKernelBackendFallsBackAndRecovers(t *testing.T) {
	for _, b := range testBackends() {
		t.Run(b.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "tool")
			exe, _ := os.Executable()
			self, err := os.ReadFile(exe)
			if err != nil {
				t.Fatal(err)
			}
			replace := func(content []byte) {
				tmp := bin + ".new"
				if err := os.WriteFile(tmp, content, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(tmp, bin); err != nil {
					t.Fatal(err)
				}
			}
			replace(self)
			p, _ := b.policy(t, fmt.Sprintf("  tool: {exec: %s, hot: true, filesystem: {exec+: [%s]}}\n", bin, dir))
			rt := newRuntime(t, p)
			check := func(step string, r agentexec.Result, code int, backend agentexec.Backend) {
				t.Helper()
				if r.ExitCode != code || r.Backend != backend || strings.Contains(r.ExecError, "bad file descriptor") {
					t.Fatalf("%s: exit %d signal %v backend %q template %q exec error %q; want exit %d from the %s backend",
						step, r.ExitCode, r.Signal, r.Backend, r.Template, r.ExecError, code, backend)
				}
			}
			check("first", run(t, rt, "tool", "-helper", "exit", "3"), 3, b.hot)
			if err := os.Remove(bin); err != nil {
				t.Fatal(err)
			}
			for i := range 2 {
				r := run(t, rt, "tool", "-helper", "exit", "3")
				check(fmt.Sprintf("removed #%d", i+1), r, 127, agentexec.BackendUserspace)
			}
			replace([]byte("#!/bin/sh\nexit 5\n"))
			for i := range 2 {
				check(fmt.Sprintf("script #%d", i+1), run(t, rt, "tool"), 5, agentexec.BackendUserspace)
			}
			replace(self)
			r := run(t, rt, "tool", "-helper", "exit", "4")
			check("restored", r, 4, b.hot)
			if r.Template != agentexec.TemplateRecreated {
				t.Errorf("restored: template %q, want recreated", r.Template)
			}
			r = run(t, rt, "tool", "-helper", "exit", "4")
			check("then", r, 4, b.hot)
			if r.Template != agentexec.TemplateHit {
				t.Errorf("then: template %q, want hit", r.Template)
			}
		})
	}
}

// Kernel-template children get the per-launch guarantees (docs/security.md,
// "Launches in flight"): they run one at a time, in the kernel launcher's domain,
// a sibling of every userspace launch's. Victims launched through a kernel template
// are out of reach of attackers beside them, and an attacker launched through a
// kernel template cannot reach userspace victims. (TestSiblingAttackControl shows
// these attacks succeed where launches share a domain.)
func TestKernelBackendSiblingsAreIsolated(t *testing.T) {
	exe, _ := os.Executable()
	p, ws := kernelPolicy(t, fmt.Sprintf("  atk: {exec: %q, hot: true, concurrency: 8}\n  vic: {exec: %q, concurrency: 8}\n", exe, exe))
	rt := newRuntime(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, c := range []struct {
		name               string
		victim, attacker   string
		victimB, attackerB agentexec.Backend
	}{
		{"kernel victim", "atk", "vic", agentexec.BackendKernel, agentexec.BackendUserspace},
		{"kernel attacker", "vic", "atk", agentexec.BackendUserspace, agentexec.BackendKernel},
	} {
		goFile := filepath.Join(ws, "out", "go-"+strings.ReplaceAll(c.name, " ", "-"))
		secret := fmt.Sprintf("secret-%d", time.Now().UnixNano())
		proc, err := rt.Start(ctx, agentexec.Request{Tool: c.victim, Args: []string{"-helper", "victim", goFile},
			Env: map[string]string{"FOO": secret}, Stdin: strings.NewReader(secret)})
		if err != nil {
			t.Fatalf("%s: start victim: %v", c.name, err)
		}
		var out strings.Builder
		done := make(chan struct{})
		var vres agentexec.Result
		var verr error
		go func() {
			defer close(done)
			buf := make([]byte, 4096)
			for {
				n, err := proc.Stdout().Read(buf)
				out.Write(buf[:n])
				if err != nil {
					break
				}
			}
			vres, verr = proc.Wait()
		}()
		pid := strconv.Itoa(proc.Pid())
		ares, err := rt.Run(ctx, agentexec.Request{Tool: c.attacker, Args: []string{"-helper", "attack", "kill", pid}})
		if err != nil || ares.ExitCode != 0 {
			t.Fatalf("%s: attacker: %v exit %d stderr %s", c.name, err, ares.ExitCode, ares.Stderr)
		}
		if ares.Backend != c.attackerB {
			t.Errorf("%s: attacker ran on the %s backend, want %s", c.name, ares.Backend, c.attackerB)
		}
		lines := strings.Split(strings.TrimSpace(string(ares.Stdout)), "\n")
		if len(lines) != len(siblingAttacks) {
			t.Errorf("%s: attacker reported %q", c.name, ares.Stdout)
		}
		for _, l := range lines {
			if strings.HasSuffix(l, " ok") {
				t.Errorf("%s: %s succeeded", c.name, l)
			}
		}
		if err := os.WriteFile(goFile, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		<-done
		want := fmt.Sprintf("pid=%s\nstdin=%s\nvictim-ok\n", pid, secret)
		if verr != nil || vres.ExitCode != 0 || out.String() != want || vres.Backend != c.victimB {
			t.Errorf("%s: victim err %v exit %d signal %v backend %q output %q; want %q untouched from the %s backend",
				c.name, verr, vres.ExitCode, vres.Signal, vres.Backend, out.String(), want, c.victimB)
		}
	}
}

// Kernel-template children run one at a time (they share the kernel launcher's
// domain); launches beside one take the userspace path and all of them run.
func TestKernelBackendConcurrentLaunches(t *testing.T) {
	p, _ := kernelPolicy(t, "")
	for _, pr := range p.Profiles {
		pr.Concurrency = 6
	}
	rt := newRuntime(t, p)
	var wg sync.WaitGroup
	var mu sync.Mutex
	backends := map[agentexec.Backend]int{}
	for i := range 12 {
		wg.Go(func() {
			r, err := rt.Run(context.Background(), agentexec.Request{Tool: "self", Args: []string{"-helper", "exit", strconv.Itoa(i % 7)}})
			if err != nil || r.ExitCode != i%7 {
				t.Errorf("launch %d: %v exit %d signal %v (%s)", i, err, r.ExitCode, r.Signal, r.ExecError)
				return
			}
			mu.Lock()
			backends[r.Backend]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if backends[agentexec.BackendKernel] == 0 {
		t.Errorf("no launch took the kernel backend: %v", backends)
	}
	t.Logf("backends: %v", backends)
}

// What a kernel-template child leaves running is gone before its result returns,
// even without a cgroup to kill (the kernel child has no session of its own either):
// the spawner kills what is left in the kernel launcher's domain before the next
// kernel child can share it. The control: processes in one domain reach each other
// (a background process of one launch reads a sibling's environment), which is what
// a leftover would do to the next kernel child.
func TestKernelBackendLeftoversKilled(t *testing.T) {
	p, _ := kernelPolicy(t, "  ksh: {exec: /bin/sh, hot: true}\n")
	rt := newRuntime(t, p, agentexec.WithoutCgroups())

	ctl, err := rt.Run(context.Background(), agentexec.Request{Tool: "ksh", Env: map[string]string{"FOO": "shared-domain"},
		Args: []string{"-c", `sleep 30 & p=$!; sleep 0.2; tr '\0' '\n' </proc/$p/environ | grep '^FOO='; kill $p`}})
	if err != nil {
		t.Fatal(err)
	}
	if ctl.Backend != agentexec.BackendKernel || !strings.Contains(string(ctl.Stdout), "FOO=shared-domain") {
		t.Fatalf("control: backend %q stdout %q stderr %q: a process could not read its domain sibling's environment", ctl.Backend, ctl.Stdout, ctl.Stderr)
	}

	r := run(t, rt, "ksh", "-c", "sleep 30 >/dev/null 2>&1 </dev/null & echo $!")
	if r.Backend != agentexec.BackendKernel {
		t.Fatalf("backend %q, want kernel", r.Backend)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(r.Stdout)))
	if err != nil {
		t.Fatalf("stdout %q", r.Stdout)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("the kernel child's background process %d (%q) outlived its launch", pid, b)
	}
}
