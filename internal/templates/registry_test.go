package templates

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestRegistry(t *testing.T) {
	dir := t.TempDir()
	hot := copyFile(t, binary(t, "true"), filepath.Join(dir, "hot"), 0o755)
	lazy := copyFile(t, binary(t, "true"), filepath.Join(dir, "lazy"), 0o755)
	r := NewRegistry()
	defer r.Close()
	if err := r.Add("hot", hot, true); err != nil {
		t.Fatal(err)
	}
	if err := r.Add("lazy", lazy, false); err != nil {
		t.Fatal(err)
	}
	if err := r.Add("hot", hot, true); err == nil {
		t.Fatal("duplicate tool accepted")
	}
	if err := r.Add("gone", filepath.Join(dir, "gone"), true); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("hot tool with a missing binary: %v", err)
	}

	for _, step := range []struct {
		tool string
		want State
	}{
		{"hot", StateHit},
		{"lazy", StateCreated},
		{"lazy", StateHit},
	} {
		snap, state, err := r.Get(step.tool)
		if err != nil || state != step.want {
			t.Fatalf("Get(%s) = %v, %v; want %s", step.tool, state, err, step.want)
		}
		if snap.Path == "" || snap.ID.Ino == 0 || !snap.ELF {
			t.Fatalf("Get(%s) snapshot %+v", step.tool, snap)
		}
	}

	if err := r.SetBaseEnv("hot", []string{"LANG=C"}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetBaseEnv("nope", nil); !errors.Is(err, ErrUnknownTool) {
		t.Fatalf("SetBaseEnv(nope): %v", err)
	}
	tmp := copyFile(t, binary(t, "false"), filepath.Join(dir, ".hot.new"), 0o755)
	if err := os.Rename(tmp, hot); err != nil {
		t.Fatal(err)
	}
	snap, state, err := r.Get("hot")
	if err != nil || state != StateRecreated {
		t.Fatalf("Get after replace = %v, %v; want recreated", state, err)
	}
	if got := run(t, snap.Path); got != 1 {
		t.Fatalf("recreated tool exited %d, want 1 (false)", got)
	}
	if len(snap.BaseEnv) != 1 || snap.BaseEnv[0] != "LANG=C" {
		t.Fatalf("base env after recreate: %q", snap.BaseEnv)
	}

	snap, state, err = r.Get("gone")
	if state != StateNone || snap.Path != filepath.Join(dir, "gone") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Get(gone) = %+v, %v, %v; want none with the path", snap, state, err)
	}
	if _, _, err := r.Get("nope"); !errors.Is(err, ErrUnknownTool) {
		t.Fatalf("Get(nope): %v, want ErrUnknownTool", err)
	}

	st := r.Status()
	if len(st) != 3 || st[0].Tool != "gone" || st[0].Ready || st[0].Err == "" || st[1].Tool != "hot" || !st[1].Ready || !st[1].Hot {
		t.Fatalf("Status = %+v", st)
	}
	if s := r.Stats(); s != (Stats{Hits: 2, Recreations: 1, Creations: 3}) {
		// hot: created, hit, recreated; lazy: created, hit.
		t.Fatalf("Stats = %+v", s)
	}
}

func TestRegistryConcurrent(t *testing.T) {
	dir := t.TempDir()
	r := NewRegistry()
	defer r.Close()
	for _, n := range []string{"a", "b"} {
		if err := r.Add(n, copyFile(t, binary(t, "true"), filepath.Join(dir, n), 0o755), false); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := map[string]int{}
	for i := range 8 {
		wg.Go(func() {
			tool := []string{"a", "b"}[i%2]
			for range 100 {
				_, state, err := r.Get(tool)
				if err != nil {
					t.Error(err)
					return
				}
				if state == StateCreated {
					mu.Lock()
					created[tool]++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if created["a"] != 1 || created["b"] != 1 {
		t.Fatalf("created %v, want each tool created exactly once", created)
	}
}
