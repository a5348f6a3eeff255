package oneshot

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/internal/testutil"
)

func useAccountCache(t *testing.T, dir string) {
	old := accountCacheDir
	accountCacheDir = dir
	t.Cleanup(func() { accountCacheDir = old })
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// The account copies are written once and reused: a second run with the same
// tool identity writes nothing (same files, same inodes); another identity gets
// copies of its own; a copy that is not what this code writes is replaced.
func TestAccountCacheReuses(t *testing.T) {
	testutil.RequireRoot(t) // the cache trusts root's files only
	dir := filepath.Join(t.TempDir(), "accounts")
	useAccountCache(t, dir)
	const id = 0x7e000abc
	ops, ok, err := cachedAccountBinds(id, id)
	if err != nil || !ok || len(ops) == 0 {
		t.Fatalf("first: %v ok=%v ops=%v", err, ok, ops)
	}
	want, _ := spawner.AccountFiles(id, id)
	inodes := map[string]uint64{}
	for i, op := range ops {
		if filepath.Dir(op.Source) != dir || op.Target != want[i].Host || op.AttrSet != unix.MOUNT_ATTR_RDONLY {
			t.Errorf("op %+v", op)
		}
		b, err := os.ReadFile(op.Source)
		if err != nil || string(b) != string(want[i].Data) || !validCopy(op.Source, len(b)) {
			t.Errorf("%s: %v, content ok %v, valid %v", op.Source, err, string(b) == string(want[i].Data), validCopy(op.Source, len(b)))
		}
		inodes[op.Source] = inode(t, op.Source)
	}
	again, ok, err := cachedAccountBinds(id, id)
	if err != nil || !ok || len(again) != len(ops) {
		t.Fatalf("second: %v ok=%v", err, ok)
	}
	for i, op := range again {
		if op.Source != ops[i].Source || inode(t, op.Source) != inodes[op.Source] {
			t.Errorf("second run did not reuse %s", ops[i].Source)
		}
	}
	other, _, _ := cachedAccountBinds(id+1, id+1)
	if other[0].Source == ops[0].Source {
		t.Errorf("another identity shares %s", ops[0].Source)
	}
	// Tampered: a mode this code never writes. Replaced, not trusted.
	if err := os.Chmod(ops[0].Source, 0o644); err != nil {
		t.Fatal(err)
	}
	if fixed, _, _ := cachedAccountBinds(id, id); fixed[0].Source != ops[0].Source || !validCopy(ops[0].Source, len(want[0].Data)) ||
		inode(t, ops[0].Source) == inodes[ops[0].Source] {
		t.Errorf("a tampered copy was kept")
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

// A cache directory others could write is not used (the caller falls back to a
// directory of the run's own); nothing is written to it.
func TestAccountCacheRefusesUnsafeDir(t *testing.T) {
	testutil.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "accounts")
	if err := os.Mkdir(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	useAccountCache(t, dir)
	if ops, ok, err := cachedAccountBinds(0x7e000abc, 0x7e000abc); ok || err != nil || ops != nil {
		t.Errorf("world-writable cache used: ok=%v err=%v ops=%v", ok, err, ops)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("wrote %d files into it", len(ents))
	}
	// Control: the same directory made safe is used.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := cachedAccountBinds(0x7e000abc, 0x7e000abc); !ok || err != nil {
		t.Errorf("safe cache not used: ok=%v err=%v", ok, err)
	}
}

// The directory stays bounded: past accountCacheMax files the oldest go, never
// the copies the run just took.
func TestAccountCacheTrims(t *testing.T) {
	testutil.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "accounts")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	useAccountCache(t, dir)
	for i := range accountCacheMax + 10 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("passwd-old%03d", i)), []byte("x"), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	ops, ok, err := cachedAccountBinds(0x7e000abc, 0x7e000abc)
	if err != nil || !ok {
		t.Fatal(err, ok)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) > accountCacheMax {
		t.Errorf("%d files left, want at most %d", len(ents), accountCacheMax)
	}
	for _, op := range ops {
		if _, err := os.Stat(op.Source); err != nil {
			t.Errorf("the run's own copy was removed: %v", err)
		}
	}
}

// trimAccountCache removes the oldest copies beyond accountCacheMax, but neither
// those the caller binds nor another run's temporary file still being written
// (removing it would fail that run's rename), even when it is the oldest.
func TestAccountCacheTrimSparesWrites(t *testing.T) {
	dir := t.TempDir()
	useAccountCache(t, dir)
	now := time.Now()
	touch := func(name string, age time.Duration) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o444); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	writing := touch("passwd-aaaa.tmp-4242", 30*time.Second) // the oldest, but in flight
	stale := touch("passwd-bbbb.tmp-4343", 2*time.Hour)      // left by a run that died
	kept := touch("group-keep", 29*time.Second)              // bound by the caller
	for i := range accountCacheMax + 5 {
		touch(fmt.Sprintf("passwd-%04d", i), time.Duration(20000-i)*time.Millisecond)
	}
	trimAccountCache([]spawner.MountOp{{Source: kept}})
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) > accountCacheMax+1 {
		t.Errorf("%d files left, want at most %d (+1 in flight)", len(ents), accountCacheMax)
	}
	for _, p := range []string{writing, kept} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s was removed: %v", filepath.Base(p), err)
		}
	}
	if _, err := os.Lstat(stale); err == nil {
		t.Error("a temporary file two hours old was kept")
	}
	if _, err := os.Lstat(filepath.Join(dir, "passwd-0000")); err == nil {
		t.Error("the oldest copy was kept")
	}
}
