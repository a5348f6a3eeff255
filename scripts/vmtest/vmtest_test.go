package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

type cpioEntry struct {
	name       string
	mode       uint32
	rdev       [2]uint32
	data       string
	headerOffs int64
}

// readCPIO parses a newc archive, checking alignment and the trailer; it returns the
// entries and the offset just past the trailer.
func readCPIO(t *testing.T, b []byte) ([]cpioEntry, int) {
	t.Helper()
	var out []cpioEntry
	off := 0
	field := func(h []byte, i int) uint32 {
		v, err := strconv.ParseUint(string(h[6+8*i:6+8*i+8]), 16, 32)
		if err != nil {
			t.Fatalf("header field %d: %v", i, err)
		}
		return uint32(v)
	}
	align := func(n int) int { return (n + 3) &^ 3 }
	for {
		if off%4 != 0 {
			t.Fatalf("entry at offset %d not 4-byte aligned", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" {
			t.Fatalf("bad magic %q at %d", h[:6], off)
		}
		mode, size, namesize := field(h, 1), int(field(h, 6)), int(field(h, 11))
		name := string(b[off+110 : off+110+namesize-1])
		if b[off+110+namesize-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		dataOff := align(off + 110 + namesize)
		e := cpioEntry{name: name, mode: mode, rdev: [2]uint32{field(h, 9), field(h, 10)},
			data: string(b[dataOff : dataOff+size]), headerOffs: int64(off)}
		off = align(dataOff + size)
		if name == "TRAILER!!!" {
			return out, off
		}
		out = append(out, e)
	}
}

func TestCPIOWriter(t *testing.T) {
	src := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(src, []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	c := newCPIOWriter(&buf)
	c.Dir("bin", 0o755)
	c.File("init", 0o755, []byte("#!/bin/sh\n"))
	c.FileFrom("bin/x", 0o700, src)
	c.Symlink("bin/sh", "/bin/busybox")
	c.CharDev("dev/console", 0o600, 5, 1)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%512 != 0 {
		t.Errorf("archive length %d is not a multiple of 512", buf.Len())
	}
	got, end := readCPIO(t, buf.Bytes())
	if rest := buf.Bytes()[end:]; bytes.Count(rest, []byte{0}) != len(rest) {
		t.Errorf("non-zero bytes after the trailer")
	}
	want := []cpioEntry{
		{name: "bin", mode: cpioModeDir | 0o755},
		{name: "init", mode: cpioModeFile | 0o755, data: "#!/bin/sh\n"},
		{name: "bin/x", mode: cpioModeFile | 0o700, data: "12345"},
		{name: "bin/sh", mode: cpioModeSymlink | 0o777, data: "/bin/busybox"},
		{name: "dev/console", mode: cpioModeChar | 0o600, rdev: [2]uint32{5, 1}},
	}
	for i := range got {
		got[i].headerOffs = 0
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("entries:\n got %+v\nwant %+v", got, want)
	}
}

func TestCPIOWriterMissingFile(t *testing.T) {
	c := newCPIOWriter(&bytes.Buffer{})
	c.FileFrom("x", 0o644, filepath.Join(t.TempDir(), "missing"))
	if err := c.Close(); err == nil {
		t.Fatal("Close succeeded after a missing source file")
	}
}

func TestWriteBase(t *testing.T) {
	bb := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(bb, []byte("BB"), 0o755); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeBase(&buf, bb, []string{"bin/sh", "sbin/poweroff", "usr/bin/env"}); err != nil {
		t.Fatal(err)
	}
	ents, _ := readCPIO(t, buf.Bytes())
	byName := map[string]cpioEntry{}
	for _, e := range ents {
		byName[e.name] = e
	}
	for name, want := range map[string]string{
		"bin/busybox":   "BB",
		"bin/sh":        "/bin/busybox",
		"sbin/poweroff": "/bin/busybox",
		"init":          string(initScript),
	} {
		if e, ok := byName[name]; !ok || e.data != want {
			t.Errorf("%s: %q (present %v), want %q", name, e.data, ok, want)
		}
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "etc", "vmtest/pkg"} {
		if byName[d].mode&cpioModeDir == 0 {
			t.Errorf("no directory %s", d)
		}
	}
	if e := byName["dev/console"]; e.rdev != [2]uint32{5, 1} {
		t.Errorf("dev/console rdev %v", e.rdev)
	}
	if !strings.HasPrefix(byName["etc/passwd"].data, "root:x:0:0:") {
		t.Errorf("etc/passwd = %q", byName["etc/passwd"].data)
	}
}

func TestPackageArchiveArgsAndEnv(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "t.test")
	os.WriteFile(bin, []byte("ELF"), 0o755)
	pkg := filepath.Join(dir, "pkg")
	os.MkdirAll(filepath.Join(pkg, "testdata", "d"), 0o755)
	os.WriteFile(filepath.Join(pkg, "testdata", "d", "a.txt"), []byte("A"), 0o644)
	var buf bytes.Buffer
	args := []string{"-test.v", "-test.run=^Test(A|B)$", "it's a test"}
	env := []string{"X=it's $HOME", "Y=a b"}
	if err := writePackageArchive(&buf, bin, args, env, pkg, nil); err != nil {
		t.Fatal(err)
	}
	ents, _ := readCPIO(t, buf.Bytes())
	files := map[string]string{}
	for _, e := range ents {
		files[e.name] = e.data
	}
	if files["vmtest/testbin"] != "ELF" || files["vmtest/pkg/testdata/d/a.txt"] != "A" {
		t.Errorf("archive files: %v", files)
	}
	// The guest's /init reads args and env exactly like this; run it with the host sh.
	os.WriteFile(filepath.Join(dir, "args"), []byte(files["vmtest/args"]), 0o644)
	os.WriteFile(filepath.Join(dir, "env"), []byte(files["vmtest/env"]), 0o644)
	script := `. ./env; set --; while IFS= read -r a; do set -- "$@" "$a"; done <args; printf '%s|' "$@" "$X" "$Y"`
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(append(args, "it's $HOME", "a b"), "|") + "|"
	if string(out) != want {
		t.Errorf("guest would see %q, want %q", out, want)
	}
	if err := writePackageArchive(&bytes.Buffer{}, bin, []string{"a\nb"}, nil, "", nil); err == nil {
		t.Error("an argument with a newline was accepted")
	}
}

func TestKernelNames(t *testing.T) {
	names := []string{
		"linux-image-6.1.0-9-cloud-amd64",
		"linux-image-6.1.0-56-cloud-amd64",
		"linux-image-6.1.0-56-cloud-amd64-dbg",
		"linux-image-6.1.0-56-cloud-amd64-unsigned",
		"linux-image-6.12.117+deb12-cloud-amd64",
		"linux-image-6.12.9+deb12-cloud-amd64",
		"linux-image-6.12-cloud-amd64",
		"linux-image-6.1.0-56-amd64",
		"linux-image-6.10.1-cloud-amd64",
	}
	match := func(series string) []string {
		var m []string
		for _, n := range names {
			if kernelNameRE(series).MatchString(n) {
				m = append(m, n)
			}
		}
		sortKernelNames(m)
		return m
	}
	if got, want := match("6.1"), []string{"linux-image-6.1.0-56-cloud-amd64", "linux-image-6.1.0-9-cloud-amd64"}; !reflect.DeepEqual(got, want) {
		t.Errorf("6.1: %v, want %v", got, want)
	}
	if got, want := match("6.12"), []string{"linux-image-6.12.117+deb12-cloud-amd64", "linux-image-6.12.9+deb12-cloud-amd64", "linux-image-6.12-cloud-amd64"}; !reflect.DeepEqual(got, want) {
		t.Errorf("6.12: %v, want %v", got, want)
	}
}

func TestTestTimeout(t *testing.T) {
	for _, tc := range []struct{ guest, want time.Duration }{
		{300 * time.Second, 270 * time.Second},
		{20 * time.Second, 15 * time.Second},
	} {
		if got := testTimeout(tc.guest); got != tc.want {
			t.Errorf("testTimeout(%s) = %s, want %s", tc.guest, got, tc.want)
		}
	}
}

func TestPkgLabel(t *testing.T) {
	for arg, want := range map[string]string{
		"./internal/cgroup/":          "internal_cgroup",
		".":                           "agentexec",
		"./scripts/vmtest/guestcheck": "scripts_vmtest_guestcheck",
	} {
		if got := pkgLabel(arg, "github.com/agentexec/agentexec"); got != want {
			t.Errorf("pkgLabel(%q) = %q, want %q", arg, got, want)
		}
	}
}

func TestSanitize(t *testing.T) {
	in := "\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS\r\n[ 2.6] reboot: Power down\x00"
	if got, want := sanitize(in), "SeaBIOS\n[ 2.6] reboot: Power down"; got != want {
		t.Errorf("sanitize = %q, want %q", got, want)
	}
}

func TestInitScriptParses(t *testing.T) {
	if out, err := exec.Command("/bin/sh", "-n", "init.sh").CombinedOutput(); err != nil {
		t.Fatalf("sh -n init.sh: %v: %s", err, out)
	}
}

func ExampleshellQuote() {
	fmt.Println(shellQuote("it's"))
	// Output: 'it'\''s'
}
