package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentexec/agentexec/internal/testutil"
)

// treeHash hashes the names and contents of every file outside .git.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		rel, _ := filepath.Rel(dir, p)
		h.Write([]byte(rel + "\x00"))
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func gitOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv("2024-01-04T00:00:00Z")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %v: %v", args, err)
	}
	return string(out)
}

func TestGenerateWorkspace(t *testing.T) {
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	wa, err := GenerateWorkspace(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateWorkspace(b); err != nil {
		t.Fatal(err)
	}
	if wa.Dirs != Packages*SubPackages || wa.Files != Packages*SubPackages*FilesPerDir+3 {
		t.Errorf("got %d files in %d dirs, want %d in %d", wa.Files, wa.Dirs, Packages*SubPackages*FilesPerDir+3, Packages*SubPackages)
	}
	var py int
	filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".py") {
			py++
		}
		return nil
	})
	if py < 2000 {
		t.Errorf("%d .py files, want about 2,000", py)
	}
	if ha, hb := treeHash(t, a), treeHash(t, b); ha != hb {
		t.Errorf("two generations differ: %s vs %s", ha, hb)
	}
	if !wa.Git {
		testutil.RequireCommand(t, "git")
		t.Fatalf("git present but workspace has no repository: %s", wa.GitErr)
	}
	if wa.Commits != 3 {
		t.Errorf("%d commits, want 3", wa.Commits)
	}
	// Same content, same dates, same author: the same commit ids.
	if ra, rb := gitOut(t, a, "rev-parse", "HEAD"), gitOut(t, b, "rev-parse", "HEAD"); ra != rb {
		t.Errorf("HEAD differs between generations: %s vs %s", ra, rb)
	}
	st := strings.Split(strings.TrimRight(gitOut(t, a, "status", "--porcelain"), "\n"), "\n")
	var mod, untracked int
	for _, l := range st {
		switch {
		case strings.HasPrefix(l, " M "):
			mod++
		case strings.HasPrefix(l, "?? "):
			untracked++
		}
	}
	if mod != 5 || untracked != 2 {
		t.Errorf("git status: %d modified, %d untracked, want 5 and 2:\n%s", mod, untracked, strings.Join(st, "\n"))
	}
	if _, err := GenerateWorkspace(a); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("generating into a non-empty directory: err %v, want a 'not empty' error", err)
	}
}

func TestPrepareWorkspaceReuse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ws")
	w1, err := prepareWorkspace(dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// The marker must not show in git status (it is excluded).
	if w1.Git && strings.Contains(gitOut(t, dir, "status", "--porcelain"), markerFile) {
		t.Errorf("git status lists the marker file %s", markerFile)
	}
	w2, err := prepareWorkspace(dir, t.TempDir())
	if err != nil {
		t.Fatalf("reuse: %v", err)
	}
	if *w1 != *w2 {
		t.Errorf("reused workspace %+v, generated %+v", w2, w1)
	}
}
