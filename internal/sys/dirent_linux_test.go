//go:build linux

package sys

import (
	"maps"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestDirentLayout checks the offsets Dirents reads against x/sys/unix's Dirent,
// which cgo -godefs generated from <dirent.h> (struct dirent64's layout, the one
// getdents64(2) writes).
func TestDirentLayout(t *testing.T) {
	var d unix.Dirent
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"d_ino", direntInoOff, unsafe.Offsetof(d.Ino)},
		{"d_reclen", direntReclenOff, unsafe.Offsetof(d.Reclen)},
		{"d_type", direntTypeOff, unsafe.Offsetof(d.Type)},
		{"d_name", direntNameOff, unsafe.Offsetof(d.Name)},
		{"sizeof(d_ino)", 8, unsafe.Sizeof(d.Ino)},
		{"sizeof(d_reclen)", 2, unsafe.Sizeof(d.Reclen)},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
}

// Getdents and Dirents list a directory as os.ReadDir does, with the entries'
// types, through a buffer too small for all of them at once.
func TestDirents(t *testing.T) {
	dir := t.TempDir()
	want := map[string]uint8{"sub": unix.DT_DIR, "link": unix.DT_LNK, ".git": unix.DT_REG}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sub", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		name := "file-with-a-longish-name-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		want[name] = unix.DT_REG
	}
	for name, typ := range want {
		if typ == unix.DT_REG {
			if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	got := map[string]uint8{}
	buf := make([]byte, 1024) // several calls
	calls := 0
	for {
		n, err := Getdents(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		calls++
		for name, typ := range Dirents(buf[:n]) {
			if typ == unix.DT_UNKNOWN {
				var st unix.Stat_t
				if err := unix.Fstatat(fd, string(name), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					t.Fatal(err)
				}
				typ = uint8((st.Mode & unix.S_IFMT) >> 12)
			}
			if _, dup := got[string(name)]; dup {
				t.Errorf("%q listed twice", name)
			}
			got[string(name)] = typ
		}
	}
	if calls < 2 {
		t.Errorf("%d getdents calls, want several through a 1 KiB buffer", calls)
	}
	if !maps.Equal(got, want) {
		t.Errorf("listed %d entries, want %d; first differences: %v", len(got), len(want), diff(got, want))
	}
	// A truncated last record ends the walk, without a panic, after the whole ones.
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		t.Fatal(err)
	}
	n, err := Getdents(fd, buf)
	if err != nil || n < 100 {
		t.Fatalf("getdents: %d, %v", n, err)
	}
	count := func(b []byte) (c int) {
		for range Dirents(b) {
			c++
		}
		return c
	}
	if whole, cut := count(buf[:n]), count(buf[:n-3]); cut != whole-1 {
		t.Errorf("%d entries from a buffer cut short, want %d", cut, whole-1)
	}
}

func diff(got, want map[string]uint8) []string {
	var d []string
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			d = append(d, k)
		}
		if len(d) > 5 {
			break
		}
	}
	return d
}
