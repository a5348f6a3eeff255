package spawner

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/testutil"
)

// PlanProtection, from facts alone: what is read-only, pinned, missing, and the mount
// order (parents first).
func TestPlanProtection(t *testing.T) {
	f := &ProtectFacts{
		Roots:   []string{"/tmp", "/ws"},
		Protect: []string{"/ws/.envrc", "/ws/.vscode", "/ws/gone", "/ws/link", "/etc/agent.conf"},
		Repos: []Repo{
			{DotGit: "/ws/.git", GitDirs: []string{"/ws/.git", "/ws/.git/worktrees/wt", "/ws/.git/modules/lib"}},
			{DotGit: "/ws/vendor/lib/.git", GitDirs: []string{"/ws/.git/modules/lib"}},
			{DotGit: "/ws/nohooks/.git", GitDirs: []string{"/ws/nohooks/.git"}},
			{DotGit: "/tmp/wt/.git", GitDirs: []string{"/srv/repo/.git/worktrees/wt"}}, // gitdir outside every root
		},
		Kinds: map[string]EntryKind{
			"/ws/.git": KindDir, "/ws/.git/config": KindFile, "/ws/.git/hooks": KindDir, "/ws/.git/info": KindDir,
			"/ws/.git/worktrees/wt": KindDir, "/ws/.git/worktrees/wt/commondir": KindFile,
			"/ws/.git/modules/lib": KindDir, "/ws/.git/modules/lib/config": KindFile, "/ws/.git/modules/lib/hooks": KindDir,
			"/ws/vendor/lib/.git": KindFile,
			"/ws/nohooks/.git":    KindDir, "/ws/nohooks/.git/config": KindSymlink,
			"/tmp/wt/.git": KindFile, "/srv/repo/.git/worktrees/wt": KindDir,
			"/ws/.envrc": KindFile, "/ws/.vscode": KindDir, "/ws/link": KindSymlink, "/etc/agent.conf": KindFile,
		},
		Incomplete: []string{"/tmp: something"},
	}
	p := PlanProtection(f)
	wantRO := []string{"/etc/agent.conf", "/tmp/wt/.git", "/ws/.envrc", "/ws/.git/config", "/ws/.git/hooks", "/ws/.git/info",
		"/ws/.git/modules/lib/config", "/ws/.git/modules/lib/hooks", "/ws/.git/worktrees/wt/commondir", "/ws/.vscode", "/ws/vendor/lib/.git"}
	wantPinned := []string{"/tmp/wt", "/ws/.git", "/ws/.git/modules", "/ws/.git/modules/lib", "/ws/.git/worktrees", "/ws/.git/worktrees/wt",
		"/ws/nohooks", "/ws/nohooks/.git", "/ws/vendor", "/ws/vendor/lib"}
	wantMissing := []string{
		"/ws/gone: absent: a tool can create it",
		"/ws/link: a symbolic link: not protected (name its target)",
		"/ws/nohooks/.git/config: not a file or directory (a symbolic link?): not protected",
		"/ws/nohooks/.git/hooks: absent: a tool can create it",
	}
	wantRepos := []string{"/tmp/wt/.git", "/ws/.git", "/ws/nohooks/.git", "/ws/vendor/lib/.git"}
	for _, c := range []struct {
		name      string
		got, want []string
	}{{"read-only", p.ReadOnly, wantRO}, {"pinned", p.Pinned, wantPinned}, {"missing", p.Missing, wantMissing}, {"repos", p.Repos, wantRepos}} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s:\n got %q\nwant %q", c.name, c.got, c.want)
		}
	}
	plan := p.MountPlan(NSID{Dev: 1, Ino: 2})
	if plan == nil || len(plan.Ops) != len(wantRO)+len(wantPinned) {
		t.Fatalf("plan %+v", plan)
	}
	at := map[string]int{}
	for i, op := range plan.Ops {
		at[op.Target] = i
		if op.Kind != MountBind || op.Source != "" || !op.Optional {
			t.Errorf("op %+v", op)
		}
		if ro := slices.Contains(wantRO, op.Target); ro != (op.AttrSet == unix.MOUNT_ATTR_RDONLY) {
			t.Errorf("op %s: attr %#x, read-only %v", op.Target, op.AttrSet, ro)
		}
	}
	for _, pair := range [][2]string{{"/ws/.git", "/ws/.git/config"}, {"/ws/.git/modules", "/ws/.git/modules/lib"},
		{"/ws/.git/modules/lib", "/ws/.git/modules/lib/hooks"}, {"/ws/vendor", "/ws/vendor/lib/.git"}} {
		if at[pair[0]] >= at[pair[1]] {
			t.Errorf("%s mounted after %s", pair[0], pair[1])
		}
	}
	if un := p.Unenforced(true, ""); !slices.Equal(un, []string{"protect: scan incomplete: /tmp: something"}) {
		t.Errorf("Unenforced(available): %q", un)
	}
	if un := p.Unenforced(false, "no CAP_SYS_ADMIN"); len(un) != 2 || !strings.Contains(un[0], "no private mount namespace (no CAP_SYS_ADMIN)") {
		t.Errorf("Unenforced(unavailable): %q", un)
	}
	if p := PlanProtection(&ProtectFacts{Roots: []string{"/ws"}}); !p.Empty() || p.MountPlan(NSID{}) != nil || p.Unenforced(false, "x") != nil {
		t.Errorf("nothing to protect: %+v", p)
	}
}

// Paths beneath a read-only protect: path need no mount of their own.
func TestPlanProtectionNested(t *testing.T) {
	p := PlanProtection(&ProtectFacts{
		Roots: []string{"/ws"}, Protect: []string{"/ws/cfg"},
		Repos: []Repo{{DotGit: "/ws/cfg/repo/.git", GitDirs: []string{"/ws/cfg/repo/.git"}}},
		Kinds: map[string]EntryKind{"/ws/cfg": KindDir, "/ws/cfg/repo/.git": KindDir, "/ws/cfg/repo/.git/config": KindFile, "/ws/cfg/repo/.git/hooks": KindDir},
	})
	if !slices.Equal(p.ReadOnly, []string{"/ws/cfg"}) || len(p.Pinned) != 0 || len(p.ops) != 1 {
		t.Errorf("read-only %q pinned %q ops %+v", p.ReadOnly, p.Pinned, p.ops)
	}
}

func mkfile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The scan finds repositories, gitdir files, submodules and linked worktrees, does
// not follow symbolic links or descend into .git, and reports what its limits left
// out.
func TestScanProtection(t *testing.T) {
	root := t.TempDir()
	ws := filepath.Join(root, "ws")
	for _, f := range []string{".git/HEAD", ".git/config", ".git/hooks/pre-commit.sample", ".git/info/exclude",
		".git/modules/libs/a/HEAD", ".git/modules/libs/a/config", ".git/modules/libs/a/hooks/x",
		".git/worktrees/wt/HEAD", ".git/worktrees/wt/commondir", ".git/sub/.git/HEAD", "src/main.go"} {
		mkfile(t, filepath.Join(ws, f), "x")
	}
	mkfile(t, filepath.Join(ws, "libs/a/.git"), "gitdir: ../../.git/modules/libs/a\n")
	mkfile(t, filepath.Join(ws, "deep/1/2/3/.git/config"), "x")
	mkfile(t, filepath.Join(ws, "bad/.git"), "nonsense")
	mkfile(t, filepath.Join(root, "elsewhere/.git/config"), "x")
	if err := os.Symlink(filepath.Join(root, "elsewhere"), filepath.Join(ws, "link")); err != nil {
		t.Fatal(err)
	}
	mkfile(t, filepath.Join(ws, ".envrc"), "x")
	mkfile(t, filepath.Join(ws, ".git/config"), "[core]\n\thooksPath = .husky\n[include]\n\tpath = ../shared.gitconfig\n[includeIf \"gitdir:/x/\"]\n\tpath = /nonexistent/inc ; c\n")
	mkfile(t, filepath.Join(ws, ".husky/pre-commit"), "x")

	f := scanProtection([]string{ws, filepath.Join(ws, "src"), "/dev/null"}, []string{filepath.Join(ws, ".envrc"), filepath.Join(ws, "none")}, 3, 100, 10)
	if !slices.Equal(f.Roots, []string{"/dev/null", ws}) {
		t.Errorf("roots %q", f.Roots)
	}
	var dotGits []string
	for _, r := range f.Repos {
		dotGits = append(dotGits, strings.TrimPrefix(r.DotGit, ws+"/"))
	}
	if want := []string{".git", "bad/.git", "libs/a/.git"}; !slices.Equal(dotGits, want) {
		t.Errorf("repositories %q, want %q", dotGits, want)
	}
	if gd := f.Repos[0].GitDirs; !slices.Equal(gd, []string{ws + "/.git", ws + "/.git/worktrees/wt", ws + "/.git/modules/libs/a"}) {
		t.Errorf("git dirs of .git: %q", gd)
	}
	if gd := f.Repos[2].GitDirs; len(gd) != 0 { // reached from .git/modules already
		t.Errorf("git dirs of libs/a/.git: %q", gd)
	}
	inc := strings.Join(f.Incomplete, "\n")
	for _, want := range []string{ws + ": 1 directories deeper than 3 levels not scanned (first " + ws + "/deep/1/2/3)",
		ws + "/bad/.git: not a gitdir file"} {
		if !strings.Contains(inc, want) {
			t.Errorf("incomplete %q lacks %q", f.Incomplete, want)
		}
	}
	if f.Kinds[ws+"/.envrc"] != KindFile || f.Kinds[ws+"/none"] != KindNone || f.Kinds[ws+"/.git/hooks"] != KindDir {
		t.Errorf("kinds %v", f.Kinds)
	}
	if named := f.Repos[0].Named; !slices.Equal(named, []string{ws + "/.husky", ws + "/shared.gitconfig", "/nonexistent/inc"}) {
		t.Errorf("named by .git/config: %q", named)
	}
	p := PlanProtection(f)
	if !slices.Contains(p.ReadOnly, ws+"/.husky") || !slices.Contains(p.Missing, ws+"/shared.gitconfig: absent: a tool can create it") ||
		slices.ContainsFunc(p.Missing, func(m string) bool { return strings.HasPrefix(m, "/nonexistent") }) {
		t.Errorf("named paths: read-only %q missing %q", p.ReadOnly, p.Missing)
	}
	if !slices.Contains(p.ReadOnly, ws+"/libs/a/.git") || !slices.Contains(p.ReadOnly, ws+"/.git/modules/libs/a/config") ||
		!slices.Contains(p.Pinned, ws+"/.git/modules/libs") || !slices.Contains(p.ReadOnly, ws+"/.git/worktrees/wt/commondir") {
		t.Errorf("plan: read-only %q pinned %q", p.ReadOnly, p.Pinned)
	}

	// Limits: directories and repositories.
	f = scanProtection([]string{ws}, nil, 16, 3, 1)
	inc = strings.Join(f.Incomplete, "\n")
	if !strings.Contains(inc, ws+": scan stopped after 3 directories:") || !strings.Contains(inc, ws+": more than 1 repositories: 1 not protected") {
		t.Errorf("incomplete %q", f.Incomplete)
	}
}

// configNamed finds hooksPath and includes however they are written.
func TestConfigNamed(t *testing.T) {
	home, _ := os.UserHomeDir()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	mkfile(t, cfg, `# comment
[Core]
	bare = false
	HooksPath = "/hooks dir" # quoted
[core "sub"]
	hookspath = sub
[include]
	path=inc.cfg
[includeIf "gitdir/i:~/src/"]
	path = ~/x.cfg
[alias]
	path = /not/this
`)
	got, err := configNamed(cfg, "/wt")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/hooks dir", dir + "/inc.cfg", filepath.Join(home, "x.cfg")}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// inPrivateMountNS runs fn on a thread of its own in a new mount namespace (all
// mounts slaves), which dies with it: nothing fn mounts reaches this process's
// other threads or the host.
func inPrivateMountNS(t *testing.T, fn func()) {
	t.Helper()
	testutil.RequireRoot(t)
	errc := make(chan error, 1)
	run := func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			errc <- err
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
			errc <- err
			return
		}
		defer func() { errc <- nil }()
		fn()
	}
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			run()
			return
		}
		// The main thread, which Go never ends (and whose namespace
		// /proc/self/mountinfo shows): hold it and use another.
		done := make(chan struct{})
		go func() { defer close(done); run() }()
		<-done
		runtime.UnlockOSThread()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("private mount namespace: %v", err)
	}
}

// On this kernel, a path bound onto itself (read-only or not) cannot be renamed,
// removed or replaced (EBUSY), and a read-only one cannot be written (EROFS); with
// both the new mount API and the mount(2) fallback.
func TestBindOntoItself(t *testing.T) {
	testutil.RequireRoot(t)
	before, _ := os.ReadFile("/proc/self/mountinfo")
	for _, classic := range []bool{false, true} {
		dir := t.TempDir()
		mkfile(t, dir+"/.git/config", "[core]\n")
		mkfile(t, dir+"/.git/hooks/x", "")
		mkfile(t, dir+"/.git/HEAD", "ref: refs/heads/main\n")
		mkfile(t, dir+"/other", "x")
		var errs []string
		check := func(what string, err, want error) {
			if !errors.Is(err, want) {
				errs = append(errs, what+": "+errString(err)+", want "+want.Error())
			}
		}
		inPrivateMountNS(t, func() {
			bind := bindNew
			if classic {
				bind = bindClassic
			}
			for _, m := range []struct {
				path string
				attr uint64
			}{{dir + "/.git", 0}, {dir + "/.git/config", unix.MOUNT_ATTR_RDONLY}, {dir + "/.git/hooks", unix.MOUNT_ATTR_RDONLY}} {
				if err := bind(m.path, m.path, m.attr); err != nil {
					errs = append(errs, err.Error())
					return
				}
			}
			check("rename .git", unix.Rename(dir+"/.git", dir+"/x"), unix.EBUSY)
			check("rmdir .git", unix.Rmdir(dir+"/.git"), unix.EBUSY)
			check("unlink config", unix.Unlink(dir+"/.git/config"), unix.EBUSY)
			check("write config.lock", os.WriteFile(dir+"/.git/config.lock", nil, 0o644), nil)
			check("rename onto config", unix.Rename(dir+"/.git/config.lock", dir+"/.git/config"), unix.EBUSY)
			// Renames across mount points fail even on one filesystem.
			check("rename into .git", unix.Rename(dir+"/other", dir+"/.git/other"), unix.EXDEV)
			check("rename hooks", unix.Rename(dir+"/.git/hooks", dir+"/.git/h2"), unix.EBUSY)
			_, err := os.OpenFile(dir+"/.git/config", os.O_WRONLY|os.O_TRUNC, 0)
			check("write config", err, unix.EROFS)
			check("create hook", os.WriteFile(dir+"/.git/hooks/pre-commit", nil, 0o755), unix.EROFS)
			check("chmod config", os.Chmod(dir+"/.git/config", 0o777), unix.EROFS)
			// The rest of .git stays writable, renames inside it too.
			check("write HEAD", os.WriteFile(dir+"/.git/HEAD.lock", []byte("x"), 0o644), nil)
			check("rename in .git", unix.Rename(dir+"/.git/HEAD.lock", dir+"/.git/HEAD"), nil)
			if err := bind(dir+"/gone", dir+"/gone", 0); !errors.Is(err, unix.ENOENT) {
				errs = append(errs, "bind of an absent path: "+errString(err))
			}
		})
		if len(errs) > 0 {
			t.Errorf("classic %v:\n%s", classic, strings.Join(errs, "\n"))
		}
		// Outside that namespace, nothing happened.
		if err := os.WriteFile(dir+"/.git/config", []byte("[core]\n"), 0o644); err != nil {
			t.Errorf("host write: %v", err)
		}
	}
	if after, _ := os.ReadFile("/proc/self/mountinfo"); string(after) != string(before) {
		t.Errorf("the test process's mount table changed:\n%s\n---\n%s", before, after)
	}
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// A spawner in the agent's own mount namespace refuses the plan before it mounts
// anything.
func TestMountPlanRefusesHostNamespace(t *testing.T) {
	ns, err := CurrentMountNS()
	if err != nil {
		t.Fatal(err)
	}
	p := &MountPlan{HostNS: ns, Ops: []MountOp{{Kind: MountBind, Target: "/nonexistent"}}}
	if err := p.apply(); err == nil || !strings.Contains(err.Error(), "refusing to mount") {
		t.Fatalf("apply in the host namespace: %v", err)
	}
}

// A spawner started with a plan applies it in a namespace of its own: its tools see
// the read-only paths, the test process (the host) sees no new mount, and an
// optional target gone since the plan was made is skipped.
func TestSpawnerMountPlan(t *testing.T) {
	testutil.RequireRoot(t)
	if ok, why := MountNSAvailable(); !ok {
		t.Skip(why)
	}
	dir := t.TempDir()
	mkfile(t, dir+"/.git/config", "[core]\n")
	mkfile(t, dir+"/.git/hooks/x", "")
	ns, _ := CurrentMountNS()
	before, _ := os.ReadFile("/proc/self/mountinfo")
	exe, _ := os.Executable()
	plan := &MountPlan{HostNS: ns, Ops: []MountOp{
		{Kind: MountBind, Target: dir + "/.git"},
		{Kind: MountBind, Target: dir + "/.git/config", AttrSet: unix.MOUNT_ATTR_RDONLY},
		{Kind: MountBind, Target: dir + "/.git/hooks", AttrSet: unix.MOUNT_ATTR_RDONLY},
		{Kind: MountBind, Target: dir + "/.git/gone", AttrSet: unix.MOUNT_ATTR_RDONLY, Optional: true},
	}}
	s, err := StartSpawner(SpawnerConfig{Binary: exe, Profile: "test", KernelTemplates: "off", Mounts: plan,
		Tools: []ToolSpec{{Name: "sh", Path: "/bin/sh"}}, Stderr: os.Stderr})
	if err != nil {
		t.Fatalf("StartSpawner: %v", err)
	}
	defer s.Close()
	sh := func(script string) (string, int) {
		p := make([]int, 2)
		if err := unix.Pipe2(p, unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		ch, err := s.Launch(&LaunchSpec{Tool: "sh", Argv: []string{"sh", "-c", script}, Dir: dir, Stdin: -1, Stdout: p[1], Stderr: p[1], CgroupFD: -1})
		unix.Close(p[1])
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Release()
		r := os.NewFile(uintptr(p[0]), "out")
		defer r.Close()
		out, _ := io.ReadAll(r)
		exit, err := ch.Wait()
		if err != nil {
			t.Fatal(err)
		}
		return string(out), exit.Status.ExitStatus()
	}
	if out, code := sh("echo x >> .git/config"); code == 0 || !strings.Contains(out, "Read-only file system") {
		t.Errorf("tool wrote .git/config: exit %d %q", code, out)
	}
	if out, code := sh("mv .git x"); code == 0 || !strings.Contains(out, "busy") {
		t.Errorf("tool renamed .git: exit %d %q", code, out)
	}
	if out, code := sh("echo x > .git/other && grep -c ' " + dir + "/.git' /proc/self/mountinfo"); code != 0 || strings.TrimSpace(out) != "3" {
		t.Errorf("in the spawner's namespace: exit %d %q, want 3 mounts", code, out)
	}
	if after, _ := os.ReadFile("/proc/self/mountinfo"); string(after) != string(before) {
		t.Errorf("the host's mount table changed")
	}
}
