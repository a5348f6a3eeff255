package spawner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// scanTree makes a tree like a shared /tmp: dirs directories, spread over a few
// levels, each with files plain files, and one repository every 500 directories.
func scanTree(tb testing.TB, dirs, files int) string {
	tb.Helper()
	root := tb.TempDir()
	for i := range dirs {
		d := filepath.Join(root, fmt.Sprintf("t%02d", i%40), fmt.Sprintf("u%03d", i/40%25), fmt.Sprintf("d%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
		for j := range files {
			if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%d.txt", j)), nil, 0o644); err != nil {
				tb.Fatal(err)
			}
		}
		if i%500 == 0 {
			if err := os.MkdirAll(filepath.Join(d, ".git", "hooks"), 0o755); err != nil {
				tb.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, ".git", "config"), []byte("[core]\n"), 0o644); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return root
}

// BenchmarkScanProtection times the repository scan of one writable root holding
// 3,000 directories of 8 files each (the size of this host's /tmp when issue 18's
// start-up was profiled), and, with AGENTEXEC_SCAN_DIR set, of that directory.
func BenchmarkScanProtection(b *testing.B) {
	roots := map[string]string{"tree3000": scanTree(b, 3000, 8)}
	if d := os.Getenv("AGENTEXEC_SCAN_DIR"); d != "" {
		roots["env"] = d
	}
	for name, root := range roots {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var f *ProtectFacts
			for b.Loop() {
				f = scanProtection([]string{root}, nil, scanMaxDepth, scanMaxDirs, scanMaxRepos)
			}
			b.ReportMetric(float64(len(f.Repos)), "repos")
		})
	}
}

// referenceWalk is the scan's walk as it was written first, one os.ReadDir at a
// time: TestScanMatchesReference holds the getdents walk to its results.
func referenceWalk(s *rootScan) {
	type queued struct {
		dir   string
		depth int
	}
	queue := []queued{{s.root, 0}}
	read := 0
	var cut cutoffs
	for len(queue) > 0 {
		if read >= s.maxDirs {
			s.f.Incomplete = append(s.f.Incomplete, fmt.Sprintf(
				"%s: scan stopped after %d directories: %d directories and everything beneath them not scanned (first %s)",
				s.root, s.maxDirs, len(queue), queue[0].dir))
			break
		}
		q := queue[0]
		queue = queue[1:]
		read++
		ents, err := os.ReadDir(q.dir)
		if err != nil {
			cut.unreadable = append(cut.unreadable, fmt.Sprintf("%s (%v)", q.dir, errors.Unwrap(err)))
			continue
		}
		for _, e := range ents {
			path := filepath.Join(q.dir, e.Name())
			if e.Name() == ".git" {
				if s.repos >= s.maxRepos {
					cut.repo(path)
					continue
				}
				if s.addRepo(path, kindOf(e.Type())) {
					s.repos++
				}
				continue
			}
			if !e.IsDir() {
				continue
			}
			if q.depth+1 > s.maxDepth {
				cut.deep(path)
				continue
			}
			queue = append(queue, queued{path, q.depth + 1})
		}
	}
	cut.report(s)
}

// The getdents walk, parallel per level, finds what the one-directory-at-a-time
// walk finds, and its limits cut the same directories and repositories, on a tree
// with repositories at several depths, gitdir files, symbolic links to
// directories and to repositories, a .git that is a symbolic link, wide and deep
// levels, and (as root) an unreadable directory.
func TestScanMatchesReference(t *testing.T) {
	root := scanTree(t, 1200, 2)
	ws := filepath.Join(root, "t01")
	mkfile(t, filepath.Join(ws, "wt/.git"), "gitdir: "+filepath.Join(root, "t00/u000/d0/.git")+"\n")
	mkfile(t, filepath.Join(ws, "deep/a/b/c/d/e/f/.git/config"), "[core]\n")
	mkfile(t, filepath.Join(root, "outside/.git/config"), "[core]\n")
	if err := os.Symlink(filepath.Join(root, "outside"), filepath.Join(ws, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "outside/.git"), filepath.Join(root, "t02/.git")); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// Root reads any directory; make one that cannot be opened as one.
		if err := os.Symlink("/nonexistent", filepath.Join(root, "t03/dangling")); err != nil {
			t.Fatal(err)
		}
	} else if err := os.Chmod(filepath.Join(root, "t03"), 0o000); err == nil {
		t.Cleanup(func() { _ = os.Chmod(filepath.Join(root, "t03"), 0o755) })
	}
	for _, lim := range []struct{ depth, dirs, repos int }{
		{scanMaxDepth, scanMaxDirs, scanMaxRepos}, {3, scanMaxDirs, scanMaxRepos}, {16, 45, 256}, {16, 41, 256},
		{16, 1, 256}, {16, 700, 2}, {2, 300, 1}, {16, 1100, 256},
	} {
		run := func(walk func(*rootScan)) *ProtectFacts {
			f := &ProtectFacts{Roots: []string{root}, Kinds: map[string]EntryKind{}}
			var bufs [scanWorkers][]byte
			bufs[0] = make([]byte, 4<<10)
			s := &rootScan{f: f, root: root, maxDepth: lim.depth, maxDirs: lim.dirs, maxRepos: lim.repos, seen: map[string]bool{}, bufs: &bufs}
			walk(s)
			return f
		}
		got, want := run((*rootScan).walk), run(referenceWalk)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("limits %+v:\n got repos %d %v\nincomplete %q\nwant repos %d %v\nincomplete %q", lim,
				len(got.Repos), dotGits(got), got.Incomplete, len(want.Repos), dotGits(want), want.Incomplete)
		}
		if lim.dirs == scanMaxDirs && lim.depth == scanMaxDepth && len(got.Repos) < 5 {
			t.Errorf("found %d repositories, want at least 5: %v", len(got.Repos), dotGits(got))
		}
	}
}

func dotGits(f *ProtectFacts) []string {
	var out []string
	for _, r := range f.Repos {
		out = append(out, r.DotGit)
	}
	return out
}
