package contain

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/testutil"
)

const nobody = uint32(65534)

func statusOf(t *testing.T, r launchResult) Status {
	t.Helper()
	if r.Status != "exit 0" {
		t.Fatalf("cat /proc/self/status: %s: %s", r.Status, r.Out)
	}
	st, err := ParseStatus([]byte(r.Out))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func catStatus(path string) launch {
	return launch{Argv: []string{path, "/proc/self/status"}}
}

// TestDropCapabilitiesRoot: a child launched after DropCapabilities has no
// capabilities in any set, and no_new_privs and the filter are inherited.
func TestDropCapabilitiesRoot(t *testing.T) {
	testutil.RequireRoot(t)
	rep := runSpawner(t, spawnerConfig{
		DropCaps: true, NNP: true, Seccomp: &SeccompSpec{Network: NetNone},
		Runs: []launch{catStatus("/bin/cat")},
	}, "", nil)
	st := statusOf(t, rep.Runs[0])
	if st.CapEff != 0 || st.CapPrm != 0 || st.CapBnd != 0 || st.CapAmb != 0 || st.CapInh != 0 {
		t.Errorf("child capabilities: eff %#x prm %#x bnd %#x amb %#x inh %#x, want all 0", st.CapEff, st.CapPrm, st.CapBnd, st.CapAmb, st.CapInh)
	}
	if !st.NoNewPrivs || st.Seccomp != 2 || st.SeccompFilters < 1 {
		t.Errorf("child: NoNewPrivs %v Seccomp %d filters %d, want true, 2, >=1", st.NoNewPrivs, st.Seccomp, st.SeccompFilters)
	}
	// Control: without the drop the same child is fully privileged.
	ctl := statusOf(t, runSpawner(t, spawnerConfig{Runs: []launch{catStatus("/bin/cat")}}, "", nil).Runs[0])
	if ctl.CapEff == 0 || ctl.CapBnd == 0 {
		t.Errorf("control child: eff %#x bnd %#x, want nonzero (root)", ctl.CapEff, ctl.CapBnd)
	}
}

// TestDropCapabilitiesKeep: a kept capability reaches launched tools (ambient) and
// nothing else does.
func TestDropCapabilitiesKeep(t *testing.T) {
	testutil.RequireRoot(t)
	rep := runSpawner(t, spawnerConfig{
		DropCaps: true, Caps: CapsSpec{Keep: []uintptr{unix.CAP_NET_BIND_SERVICE}}, NNP: true,
		Runs: []launch{catStatus("/bin/cat")},
	}, "", nil)
	st := statusOf(t, rep.Runs[0])
	want := uint64(1) << unix.CAP_NET_BIND_SERVICE
	if st.CapEff != want || st.CapPrm != want || st.CapBnd != want || st.CapAmb != want {
		t.Errorf("child: eff %#x prm %#x bnd %#x amb %#x, want %#x each", st.CapEff, st.CapPrm, st.CapBnd, st.CapAmb, want)
	}
	// The same as nobody: the kept capability survives the uid change and exec.
	rep = runSpawner(t, spawnerConfig{
		DropCaps: true, NNP: true,
		Caps: CapsSpec{Keep: []uintptr{unix.CAP_NET_BIND_SERVICE}, User: &User{UID: nobody, GID: nobody}},
		Runs: []launch{catStatus("/bin/cat")},
	}, "", nil)
	st = statusOf(t, rep.Runs[0])
	if st.CapEff != want || st.CapPrm != want || st.CapAmb != want || st.UID[0] != nobody {
		t.Errorf("child as nobody: uid %d eff %#x prm %#x amb %#x, want uid %d and %#x", st.UID[0], st.CapEff, st.CapPrm, st.CapAmb, nobody, want)
	}
}

// TestDropCapabilitiesWithoutSetpcap: uid 0 without CAP_SETPCAP (a container that
// withheld it) cannot empty the bounding set: DropCapabilities says so with
// ErrCannotDropBounding, yet still empties the other sets, so a launched tool has
// no capability in use.
func TestDropCapabilitiesWithoutSetpcap(t *testing.T) {
	testutil.RequireRoot(t)
	last, err := LastCap()
	if err != nil {
		t.Fatal(err)
	}
	var keep []uintptr
	for c := uintptr(0); c <= last; c++ {
		if c != unix.CAP_SETPCAP {
			keep = append(keep, c)
		}
	}
	inner := spawnerConfig{DropCaps: true, TolerateBounding: true, Runs: []launch{catStatus("/bin/cat")}}
	b, _ := json.Marshal(inner)
	// The outer helper keeps every capability but CAP_SETPCAP (ambient, so that they
	// survive exec) and starts the inner helper as uid 0 with them.
	outer := runSpawner(t, spawnerConfig{DropCaps: true, Caps: CapsSpec{Keep: keep}, Runs: []launch{{
		Argv: []string{testExe(t), "-test.run=^$"},
		Env:  []string{helperEnv + "=spawner", configEnv + "=" + string(b)},
	}}}, "", nil)
	r := outer.Runs[0]
	if r.Status != "exit 0" {
		t.Fatalf("inner helper: %s: %s", r.Status, r.Out)
	}
	var rep spawnerReport
	if err := json.Unmarshal([]byte(r.Out), &rep); err != nil {
		t.Fatalf("inner helper output %q: %v", r.Out, err)
	}
	if rep.SetupErr != "" {
		t.Fatalf("inner setup: %s", rep.SetupErr)
	}
	if !strings.Contains(rep.CapsErr, ErrCannotDropBounding.Error()) {
		t.Errorf("inner DropCapabilities error %q, want ErrCannotDropBounding", rep.CapsErr)
	}
	st := statusOf(t, rep.Runs[0])
	if st.CapEff != 0 || st.CapPrm != 0 || st.CapAmb != 0 || st.CapInh != 0 {
		t.Errorf("tool: eff %#x prm %#x amb %#x inh %#x, want 0", st.CapEff, st.CapPrm, st.CapAmb, st.CapInh)
	}
	if st.CapBnd == 0 || st.CapBnd&(1<<unix.CAP_SETPCAP) != 0 {
		t.Errorf("tool bounding set %#x: want the outer's (all but CAP_SETPCAP)", st.CapBnd)
	}
}

// privBinaries makes a setuid-root copy and a file-capability copy of /bin/cat in
// a directory every user can reach.
func privBinaries(t *testing.T) (suid, fcap, fcapP string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "contain-priv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("/bin/cat")
	if err != nil {
		t.Fatal(err)
	}
	suid, fcap, fcapP = filepath.Join(dir, "suidcat"), filepath.Join(dir, "fcapcat"), filepath.Join(dir, "fcapcat-p")
	for _, p := range []string{suid, fcap, fcapP} {
		if err := os.WriteFile(p, src, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(suid, 0o4755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(suid); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Fatalf("setuid bit not set on %s: %v", suid, err)
	}
	// fcap: cap_dac_override,cap_net_raw+ep (a "capability-dumb" binary, effective
	// bit set); fcapP: the same caps +p only.
	setFileCaps(t, fcap, true)
	setFileCaps(t, fcapP, false)
	return suid, fcap, fcapP
}

// setFileCaps gives path cap_dac_override,cap_net_raw (+ep or +p) with setcap(8),
// or by writing the security.capability xattr (VFS_CAP_REVISION_2) when setcap is
// missing.
func setFileCaps(t *testing.T, path string, effective bool) {
	t.Helper()
	flags := "+p"
	if effective {
		flags = "+ep"
	}
	out, err := exec.Command("setcap", "cap_dac_override,cap_net_raw"+flags, path).CombinedOutput()
	if err == nil {
		return
	}
	t.Logf("setcap: %v %s; writing the xattr directly", err, out)
	v := make([]byte, 20)
	le := func(off int, x uint32) {
		v[off], v[off+1], v[off+2], v[off+3] = byte(x), byte(x>>8), byte(x>>16), byte(x>>24)
	}
	magic := uint32(0x02000000) // VFS_CAP_REVISION_2
	if effective {
		magic |= 1 // VFS_CAP_FLAGS_EFFECTIVE
	}
	le(0, magic)
	le(4, 1<<unix.CAP_DAC_OVERRIDE|1<<unix.CAP_NET_RAW)
	if err := unix.Setxattr(path, "security.capability", v, 0); err != nil {
		t.Fatalf("setxattr security.capability: %v", err)
	}
}

// TestNoPrivilegeRegain: after DropCapabilities (to nobody, and as root), exec of a
// setuid-root or file-capability binary grants no capability, even without
// no_new_privs; the control run shows that the same binaries do grant them. A
// "capability-dumb" binary (+ep) whose capabilities cannot all be granted is
// refused by execve itself with EPERM, which also counts as gaining nothing.
func TestNoPrivilegeRegain(t *testing.T) {
	testutil.RequireRoot(t)
	suid, fcap, fcapP := privBinaries(t)
	fcapWant := uint64(1)<<unix.CAP_DAC_OVERRIDE | 1<<unix.CAP_NET_RAW

	// Control: a plain uid switch (what runs without the caps layer) regains them.
	n := nobody
	ctl := runSpawner(t, spawnerConfig{Runs: []launch{
		{Argv: []string{suid, "/proc/self/status"}, AsUID: &n},
		{Argv: []string{fcap, "/proc/self/status"}, AsUID: &n},
		{Argv: []string{fcapP, "/proc/self/status"}, AsUID: &n},
	}}, "", nil)
	if st := statusOf(t, ctl.Runs[0]); st.CapEff == 0 || st.UID[1] != 0 {
		t.Errorf("control setuid-root exec: eff %#x euid %d, want caps and euid 0", st.CapEff, st.UID[1])
	}
	if st := statusOf(t, ctl.Runs[1]); st.CapEff != fcapWant {
		t.Errorf("control file-cap +ep exec: eff %#x, want %#x", st.CapEff, fcapWant)
	}
	if st := statusOf(t, ctl.Runs[2]); st.CapPrm != fcapWant {
		t.Errorf("control file-cap +p exec: prm %#x, want %#x", st.CapPrm, fcapWant)
	}

	for _, tc := range []struct {
		name string
		caps CapsSpec
		nnp  bool
	}{
		{"nobody", CapsSpec{User: &User{UID: nobody, GID: nobody}}, false},
		{"nobody+nnp", CapsSpec{User: &User{UID: nobody, GID: nobody}}, true},
		{"root", CapsSpec{}, false},
		{"root+nnp", CapsSpec{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := runSpawner(t, spawnerConfig{DropCaps: true, Caps: tc.caps, NNP: tc.nnp, Runs: []launch{
				{Argv: []string{suid, "/proc/self/status"}},
				{Argv: []string{fcap, "/proc/self/status"}},
				{Argv: []string{fcapP, "/proc/self/status"}},
			}}, "", nil)
			for i, r := range rep.Runs {
				if i == 1 && r.Status == "error: forkexec: operation not permitted" {
					continue // execve refused the capability-dumb binary: nothing gained
				}
				st := statusOf(t, r)
				if st.CapEff != 0 || st.CapPrm != 0 || st.CapBnd != 0 || st.CapAmb != 0 {
					t.Errorf("run %d: eff %#x prm %#x bnd %#x amb %#x, want 0", i, st.CapEff, st.CapPrm, st.CapBnd, st.CapAmb)
				}
				if tc.caps.User != nil && st.UID[0] != nobody {
					t.Errorf("run %d: ruid %d, want %d", i, st.UID[0], nobody)
				}
				if tc.nnp && tc.caps.User != nil && st.UID[1] != nobody {
					t.Errorf("run %d: euid %d under no_new_privs, want %d", i, st.UID[1], nobody)
				}
			}
		})
	}
}

// TestDropCapabilitiesNonRoot: as an unprivileged user the calls succeed and change
// nothing they cannot; the filter installs after no_new_privs.
func TestDropCapabilitiesNonRoot(t *testing.T) {
	testutil.RequireRoot(t) // to become nobody
	dir, err := os.MkdirTemp("", "contain-exe-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	exe := filepath.Join(dir, "contain.test")
	src, err := os.Open(testExe(t))
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.OpenFile(exe, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(dst, src)
	src.Close()
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	n := nobody
	rep := runSpawner(t, spawnerConfig{
		// `user:` naming the identity it already has is accepted without privilege.
		DropCaps: true, Caps: CapsSpec{User: &User{UID: nobody, GID: nobody}}, NNP: true,
		Seccomp: &SeccompSpec{Network: NetNone},
		Runs:    []launch{catStatus("/bin/cat")},
	}, exe, &n)
	st := statusOf(t, rep.Runs[0])
	if st.CapEff != 0 || st.CapPrm != 0 || !st.NoNewPrivs || st.Seccomp != 2 || st.UID[0] != nobody {
		t.Errorf("non-root child: %+v", st)
	}
}

// listeners starts local UDP, TCP and unix (pathname and abstract) listeners in the
// unrestricted test process.
func listeners(t *testing.T) probeTargets {
	t.Helper()
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tcp.Close() })
	go testutil.AcceptAll(tcp)
	path := filepath.Join(t.TempDir(), "sock")
	ul, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ul.Close() })
	go testutil.AcceptAll(ul)
	abs := "agentexec-contain-test-" + strings.ReplaceAll(t.Name(), "/", "-")
	al, err := net.Listen("unix", "@"+abs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { al.Close() })
	go testutil.AcceptAll(al)
	return probeTargets{UDP: udp.LocalAddr().String(), TCP: tcp.Addr().String(), UnixPath: path, UnixAbstract: abs, Agent: os.Getpid()}
}

var allProbes = []string{
	"udp", "tcp", "tcp-proto", "mptcp", "raw", "packet", "netlink", "unix", "unix-abstract", "socketpair",
	"kill-spawner", "kill-spawner-pgrp", "kill-all", "tgkill-spawner", "tkill-spawner", "sigqueue-spawner",
	"pidfd-open-spawner", "pidfd-send-spawner", "ptrace-spawner", "kill-own-child", "prlimit-spawner", "setown-spawner", "setpriority-spawner", "kill-agent", "environ-agent", "clone-newuser", "clone3-newuser", "unshare-newuser", "io_uring",
}

func probeLaunch(t *testing.T, tg probeTargets, sig syscall.Signal) launch {
	b, _ := json.Marshal(tg)
	return launch{
		Argv: append([]string{testExe(t)}, allProbes...),
		Env: []string{helperEnv + "=probe", targetsEnv + "=" + string(b), "PROBE_SIG=" + itoa(int(sig)),
			"PATH=/usr/bin:/bin"},
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestSeccompProbes runs every probe from a child of a restricted spawner, and the
// same probes from a child of an unrestricted one (control: each must work there, so
// that a refusal under the filter is the filter's doing).
func TestSeccompProbes(t *testing.T) {
	testutil.RequireRoot(t)
	tg := listeners(t)

	ctl := runSpawner(t, spawnerConfig{Runs: []launch{probeLaunch(t, tg, 0)}}, "", nil)
	if ctl.Runs[0].Status != "exit 0" {
		t.Fatalf("control probe: %s: %s", ctl.Runs[0].Status, ctl.Runs[0].Out)
	}
	control := parseProbes(t, ctl.Runs[0].Out)
	for _, p := range allProbes {
		if e, ok := control[p]; !ok || e != 0 {
			t.Errorf("control: probe %s = %v (%d), want success outside the sandbox", p, e, int(e))
		}
	}

	ok := syscall.Errno(0)
	eperm := syscall.EPERM
	cases := []struct {
		name string
		spec SeccompSpec
		want map[string]syscall.Errno
	}{
		{"none", SeccompSpec{Network: NetNone}, map[string]syscall.Errno{
			"udp": eperm, "tcp": eperm, "tcp-proto": eperm, "mptcp": eperm, "raw": eperm, "packet": eperm,
			"netlink": eperm, "unix": eperm, "unix-abstract": eperm, "socketpair": ok,
		}},
		{"none+unix", SeccompSpec{Network: NetNone, Unix: true}, map[string]syscall.Errno{
			"udp": eperm, "tcp": eperm, "mptcp": eperm, "raw": eperm, "netlink": eperm,
			"unix": ok, "unix-abstract": ok, "socketpair": ok,
		}},
		{"tcp", SeccompSpec{Network: NetTCP}, map[string]syscall.Errno{
			"udp": eperm, "tcp": ok, "tcp-proto": ok, "mptcp": eperm, "raw": eperm, "packet": eperm,
			"netlink": eperm, "unix": eperm, "unix-abstract": eperm,
		}},
	}
	common := map[string]syscall.Errno{
		"kill-spawner": eperm, "kill-spawner-pgrp": eperm, "kill-all": eperm, "tgkill-spawner": eperm,
		"tkill-spawner": eperm, "sigqueue-spawner": eperm, "pidfd-open-spawner": eperm,
		"pidfd-send-spawner": eperm, "ptrace-spawner": eperm, "kill-own-child": ok,
		"kill-agent": eperm, "environ-agent": syscall.EACCES,
		"prlimit-spawner": eperm, "setown-spawner": eperm, "setpriority-spawner": eperm,
		"clone-newuser": eperm, "unshare-newuser": eperm, "io_uring": eperm,
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec := c.spec
			spec.ProtectPIDs = []int{os.Getpid()}
			rep := runSpawner(t, spawnerConfig{
				DropCaps: true, NNP: true, Seccomp: &spec,
				Runs: []launch{probeLaunch(t, tg, syscall.SIGTERM)},
			}, "", nil)
			r := rep.Runs[0]
			if r.Status != "exit 0" {
				t.Fatalf("probe child: %s: %s", r.Status, r.Out)
			}
			got := parseProbes(t, r.Out)
			t.Logf("clone3(CLONE_NEWUSER) under the filter: %v (documented gap: clone3 flags are not inspectable)", got["clone3-newuser"])
			for name, want := range c.want {
				if got[name] != want {
					t.Errorf("%s: got %v (%d), want %v (%d)", name, got[name], int(got[name]), want, int(want))
				}
			}
			for name, want := range common {
				if got[name] != want {
					t.Errorf("%s: got %v (%d), want %v (%d)", name, got[name], int(got[name]), want, int(want))
				}
			}
		})
	}
}

// TestProtectTIDs: kill and tkill of a protected spawner thread are refused; the
// control (no filter, signal 0) shows that the same calls reach it otherwise.
func TestProtectTIDs(t *testing.T) {
	testutil.RequireRoot(t)
	for _, filtered := range []bool{false, true} {
		sig, want := syscall.Signal(0), syscall.Errno(0)
		cfg := spawnerConfig{ProtectThread: true}
		if filtered {
			sig, want = syscall.SIGTERM, syscall.EPERM
			cfg.DropCaps, cfg.NNP, cfg.Seccomp = true, true, &SeccompSpec{Network: NetAll}
		}
		cfg.Runs = []launch{{Argv: []string{testExe(t), "kill-protected-tid"},
			Env: []string{helperEnv + "=probe", "PROBE_SIG=" + strconv.Itoa(int(sig))}}}
		r := runSpawner(t, cfg, "", nil).Runs[0]
		if r.Status != "exit 0" {
			t.Fatalf("probe: %s: %s", r.Status, r.Out)
		}
		if got := parseProbes(t, r.Out)["kill-protected-tid"]; got != want {
			t.Errorf("filtered=%v: kill/tkill of the protected thread: %v (%d), want %v", filtered, got, int(got), want)
		}
	}
}

// TestLauncherScope checks the design docs/security.md recommends against the
// thread-id gap: kill(tid) of any thread signals the whole process, and the filter
// cannot know the spawner's thread ids. With the filter alone a tool reaches some
// spawner thread (the gap, asserted so that a kernel change is noticed); launching
// from a thread with a nested scope-only Landlock domain, whose tid the filter
// protects, leaves no spawner thread reachable.
func TestLauncherScope(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 6)
	probes := []string{"kill-spawner-threads", "kill-protected-tid", "kill-spawner", "kill-own-child"}
	for _, scoped := range []bool{false, true} {
		cfg := spawnerConfig{DropCaps: true, NNP: true, Seccomp: &SeccompSpec{Network: NetNone},
			LauncherScope: scoped, ProtectThread: !scoped,
			Runs: []launch{{Argv: append([]string{testExe(t)}, probes...),
				Env: []string{helperEnv + "=probe", "PROBE_SIG=15", "PATH=/usr/bin:/bin"}}}}
		r := runSpawner(t, cfg, "", nil).Runs[0]
		if r.Status != "exit 0" {
			t.Fatalf("scoped=%v: probe: %s: %s", scoped, r.Status, r.Out)
		}
		got := parseProbes(t, r.Out)
		want := map[string]syscall.Errno{"kill-protected-tid": syscall.EPERM, "kill-spawner": syscall.EPERM, "kill-own-child": 0,
			"kill-spawner-threads": syscall.EPERM}
		if !scoped {
			want["kill-spawner-threads"] = 0 // the gap
		}
		for p, w := range want {
			if got[p] != w {
				t.Errorf("scoped=%v: %s = %v (%d), want %v", scoped, p, got[p], int(got[p]), w)
			}
		}
	}
}

// TestToolsUnderFilter: the Go runtime of the spawner keeps working after Install
// (goroutines, timers, async preemption, clone3 into a cgroup with a pidfd), and
// ordinary tools run under the filter.
func TestToolsUnderFilter(t *testing.T) {
	testutil.RequireRoot(t)
	cg := testutil.RequireCgroup2(t)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	if v, ok := os.LookupEnv("PYENV_ROOT"); ok {
		env = append(env, "PYENV_ROOT="+v)
	}
	// Each case runs if its tool is installed (tool "" needs only /bin/sh); all run
	// in one spawner, and each is reported as a subtest, skipped when its tool is
	// missing.
	cases := []struct {
		name, tool string
		args       []string
		want       string // output prefix
	}{
		{"pipe", "", []string{"/bin/sh", "-c", "echo a | cat"}, "a\n"},
		{"git", "git", []string{"--version"}, "git version"},
		{"python3", "python3", []string{"-c", "print(1)"}, "1\n"},
		{"coreutils", "", []string{"/bin/sh", "-c", "ls / >/dev/null && sort </etc/passwd | head -1 >/dev/null && echo ok"}, "ok\n"},
		{"rg", "rg", []string{"--version"}, "ripgrep"},
		{"node", "node", []string{"-e", "require('child_process').execFileSync('/bin/true'); console.log('node ok')"}, "node ok\n"},
		{"bash", "bash", []string{"-c", "x=$(echo sub); echo $x"}, "sub\n"},
	}
	var runs []launch
	missing := make([]error, len(cases)) // non-nil: skipped
	index := make([]int, len(cases))     // into runs
	for i, c := range cases {
		argv := c.args
		if c.tool != "" {
			p, err := exec.LookPath(c.tool)
			if err != nil {
				missing[i] = err
				continue
			}
			argv = append([]string{p}, c.args...)
		}
		index[i] = len(runs)
		runs = append(runs, launch{Argv: argv, Env: env})
	}
	rep := runSpawner(t, spawnerConfig{
		DropCaps: true, NNP: true, Seccomp: &SeccompSpec{Network: NetNone},
		RuntimeChecks: true, CgroupDir: cg, Runs: runs,
	}, "", nil)
	if len(rep.Runs) != len(runs) {
		t.Fatalf("spawner reported %d runs, want %d", len(rep.Runs), len(runs))
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if missing[i] != nil {
				t.Skipf("requires %s: %v", c.tool, missing[i])
			}
			r, l := rep.Runs[index[i]], runs[index[i]]
			if r.Status != "exit 0" || !strings.HasPrefix(r.Out, c.want) {
				t.Errorf("%q: %s, output %q, want prefix %q", l.Argv, r.Status, r.Out, c.want)
			}
		})
	}
}

func TestNetNSAvailable(t *testing.T) {
	before, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	ok, why := NetNSAvailable()
	t.Logf("NetNSAvailable: %v: %s", ok, why)
	if os.Geteuid() == 0 && !ok {
		t.Errorf("as root: NetNSAvailable = false: %s", why)
	}
	// Every remaining thread is still in the original namespace.
	tasks, _ := os.ReadDir("/proc/self/task")
	for _, task := range tasks {
		ns, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if err != nil {
			continue // the thread exited meanwhile
		}
		if ns != before {
			t.Errorf("thread %s in %s after the probe, want %s", task.Name(), ns, before)
		}
	}
}

// TestEmptyNetNS checks what docs/security.md says an empty network namespace
// (network.isolated) blocks: IP to the host's loopback listeners and abstract unix
// sockets bound outside; pathname unix sockets are files and are not affected.
func TestEmptyNetNS(t *testing.T) {
	testutil.RequireRoot(t)
	if ok, why := NetNSAvailable(); !ok {
		t.Fatalf("NetNSAvailable as root: %s", why)
	}
	tg := listeners(t)
	l := probeLaunch(t, tg, 0)
	l.Argv = []string{testExe(t), "udp", "tcp", "mptcp", "unix-abstract", "unix", "raw"}
	l.NewNet = true
	r := runSpawner(t, spawnerConfig{Runs: []launch{l}}, "", nil).Runs[0]
	if r.Status != "exit 0" {
		t.Fatalf("probe: %s: %s", r.Status, r.Out)
	}
	got := parseProbes(t, r.Out)
	for p, want := range map[string]syscall.Errno{
		"udp": syscall.ENETUNREACH, "tcp": syscall.ENETUNREACH, "mptcp": syscall.ENETUNREACH,
		"unix-abstract": syscall.ECONNREFUSED, "unix": 0,
		"raw": 0, // creating one works as root (no caps layer here); it reaches nothing
	} {
		if got[p] != want {
			t.Errorf("%s in an empty netns: %v (%d), want %v", p, got[p], int(got[p]), want)
		}
	}
}

func TestInstallNeedsNoNewPrivs(t *testing.T) {
	if nnp, _ := noNewPrivsForTest(); nnp {
		t.Skip("test process already has no_new_privs")
	}
	f, err := BuildSeccomp(SeccompSpec{SpawnerPID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Install(); !errors.Is(err, ErrNoNewPrivs) {
		t.Fatalf("Install without no_new_privs: %v, want ErrNoNewPrivs", err)
	}
}

func TestParseStatus(t *testing.T) {
	st, err := ParseStatus([]byte("Name:\tcat\nUid:\t0\t1\t2\t3\nGid:\t4\t5\t6\t7\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000400\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Status{CapPrm: 0x1ffffffffff, CapEff: 0x1ffffffffff, CapBnd: 0x1ffffffffff, CapAmb: 0x400,
		NoNewPrivs: true, Seccomp: 2, SeccompFilters: 1, UID: [4]uint32{0, 1, 2, 3}, GID: [4]uint32{4, 5, 6, 7}}
	if st != want {
		t.Errorf("ParseStatus = %+v, want %+v", st, want)
	}
	if _, err := ParseStatus([]byte("CapEff:\tzz\n")); err == nil {
		t.Error("bad hex accepted")
	}
}

func TestCapNames(t *testing.T) {
	if CapName(unix.CAP_SYS_ADMIN) != "CAP_SYS_ADMIN" || CapName(unix.CAP_CHECKPOINT_RESTORE) != "CAP_CHECKPOINT_RESTORE" {
		t.Error("CapName table out of order")
	}
	if c, ok := CapByName("net_raw"); !ok || c != unix.CAP_NET_RAW {
		t.Errorf("CapByName(net_raw) = %d %v", c, ok)
	}
}

func noNewPrivsForTest() (bool, error) {
	st, err := ReadStatus("/proc/self/status")
	return st.NoNewPrivs, err
}
