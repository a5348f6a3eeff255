package guestcheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/testutil"
)

// helperEnv makes the test binary act as a helper process instead of running tests.
const helperEnv = "GUESTCHECK_HELPER"

// allocMiB is what the memory helper allocates and touches; memLimit is the
// memory.max it runs under.
const (
	allocMiB = 128
	memLimit = 32 << 20
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "alloc":
		os.Exit(allocHelper())
	default:
		fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// allocHelper prints its cgroup, then allocates and touches allocMiB MiB. Under a
// working memory.max it never gets to print "allocated".
func allocHelper() int {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Printf("cgroup: %s", cg)
	bufs := make([][]byte, 0, allocMiB)
	for i := 0; i < allocMiB; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(i + 1)
		}
		bufs = append(bufs, b)
	}
	sum := 0
	for _, b := range bufs {
		sum += int(b[0])
	}
	fmt.Printf("allocated %d MiB (checksum %d)\n", allocMiB, sum)
	return 0
}

func requireVM(t *testing.T) {
	t.Helper()
	if !testutil.InVM() {
		t.Skip("runs only inside the VM tier guest (AGENTEXEC_VM=1 is unset); run `make vmtest`")
	}
}

// TestGuestUserland checks what ordinary tests expect of the guest: /bin/sh and the
// common commands, /dev/null, a tmpfs /tmp, /etc/passwd, root.
func TestGuestUserland(t *testing.T) {
	requireVM(t)
	if os.Geteuid() != 0 {
		t.Fatalf("euid = %d, want 0", os.Geteuid())
	}
	out, err := exec.Command("/bin/sh", "-c", "echo hello from $0").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "hello from /bin/sh" {
		t.Errorf("/bin/sh -c: %q, %v", out, err)
	}
	for _, argv := range [][]string{{"/bin/true"}, {"/bin/sleep", "0.1"}, {"/bin/cat", "/etc/passwd"}, {"/usr/bin/env"}} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Errorf("%v: %v: %s", argv, err, out)
		}
	}
	if err := exec.Command("/bin/false").Run(); err == nil {
		t.Errorf("/bin/false succeeded")
	}
	if err := os.WriteFile("/dev/null", []byte("x"), 0); err != nil {
		t.Errorf("write /dev/null: %v", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/tmp", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Errorf("/tmp: statfs type %#x, %v; want tmpfs", st.Type, err)
	}
	if p, err := os.ReadFile("/etc/passwd"); err != nil || !bytes.HasPrefix(p, []byte("root:x:0:0:")) {
		t.Errorf("/etc/passwd: %q, %v", p, err)
	}
	if k := os.Getenv("AGENTEXEC_VM_KERNEL"); k != unameRelease(t) {
		t.Errorf("AGENTEXEC_VM_KERNEL=%q, uname -r says %q", k, unameRelease(t))
	}
}

func unameRelease(t *testing.T) string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatalf("uname: %v", err)
	}
	return unix.ByteSliceToString(u.Release[:])
}

// TestCgroup2 checks the pure cgroup v2 hierarchy: cgroup2 at /sys/fs/cgroup, no
// v1 hierarchy, this process in the root, and memory, pids, cpu (and io, cpuset)
// enabled for children.
func TestCgroup2(t *testing.T) {
	requireVM(t)
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		t.Fatalf("statfs /sys/fs/cgroup: %v", err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Fatalf("/sys/fs/cgroup has filesystem type %#x, want cgroup2 (%#x)", st.Type, unix.CGROUP2_SUPER_MAGIC)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, " - cgroup ") {
			t.Errorf("a cgroup v1 hierarchy is mounted: %s", l)
		}
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil || strings.TrimSpace(string(self)) != "0::/" {
		t.Errorf("/proc/self/cgroup = %q, %v; want 0::/", self, err)
	}
	sc, err := os.ReadFile("/sys/fs/cgroup/cgroup.subtree_control")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, c := range strings.Fields(string(sc)) {
		have[c] = true
	}
	for _, c := range []string{"memory", "pids", "cpu", "io", "cpuset"} {
		if !have[c] {
			t.Errorf("controller %q not in /sys/fs/cgroup/cgroup.subtree_control (%q)", c, strings.TrimSpace(string(sc)))
		}
	}
}

// landlockABIs maps the first kernel version of each Landlock ABI.
var landlockABIs = []struct{ major, minor, abi int }{
	{5, 13, 1}, {5, 19, 2}, {6, 2, 3}, {6, 7, 4}, {6, 10, 5}, {6, 12, 6}, {6, 15, 7},
}

// expectedLandlockABI returns the ABI of a kernel release ("6.1.0-48-cloud-amd64")
// and whether it is exact (false: at least that; the kernel is newer than the table).
func expectedLandlockABI(release string) (abi int, exact bool, err error) {
	m := regexp.MustCompile(`^([0-9]+)\.([0-9]+)`).FindStringSubmatch(release)
	if m == nil {
		return 0, false, fmt.Errorf("cannot parse kernel release %q", release)
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	exact = true
	for i, r := range landlockABIs {
		if major > r.major || major == r.major && minor >= r.minor {
			abi = r.abi
			exact = i < len(landlockABIs)-1
		}
	}
	return abi, exact, nil
}

func TestExpectedLandlockABI(t *testing.T) {
	for _, tc := range []struct {
		release string
		abi     int
		exact   bool
	}{
		{"6.1.0-48-cloud-amd64", 2, true},
		{"6.12.57+deb12-cloud-amd64", 6, true},
		{"6.11.2", 5, true},
		{"6.18.0", 7, false},
		{"5.10.0-30-amd64", 0, true},
	} {
		abi, exact, err := expectedLandlockABI(tc.release)
		if err != nil || abi != tc.abi || exact != tc.exact {
			t.Errorf("expectedLandlockABI(%q) = %d, %v, %v; want %d, %v", tc.release, abi, exact, err, tc.abi, tc.exact)
		}
	}
}

// TestLandlockABI checks that the guest kernel has the Landlock ABI its version
// promises (6 on 6.12, 2 on 6.1), so that ABI-dependent tests really run on it.
func TestLandlockABI(t *testing.T) {
	requireVM(t)
	rel := os.Getenv("AGENTEXEC_VM_KERNEL")
	want, exact, err := expectedLandlockABI(rel)
	if err != nil {
		t.Fatalf("AGENTEXEC_VM_KERNEL: %v", err)
	}
	got, err := testutil.LandlockABI()
	if err != nil {
		t.Fatalf("Landlock ABI probe on %s: %v", rel, err)
	}
	if exact && got != want || !exact && got < want {
		t.Fatalf("kernel %s: Landlock ABI %d, want %d", rel, got, want)
	}
	t.Logf("kernel %s: Landlock ABI %d", rel, got)
}

// TestMemoryMaxOOMKill proves that the tier catches a broken memory limit: a helper
// started into a cgroup with memory.max=32M (via clone3 CLONE_INTO_CGROUP) that
// allocates 128 MiB must be OOM-killed, and memory.events must count it.
func TestMemoryMaxOOMKill(t *testing.T) {
	requireVM(t)
	dir := filepath.Join("/sys/fs/cgroup", fmt.Sprintf("guestcheck-mem-%d", os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("create cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove cgroup: %v", err)
		}
	})
	writeFile(t, filepath.Join(dir, "memory.max"), strconv.Itoa(memLimit))
	if b, err := os.ReadFile(filepath.Join(dir, "memory.max")); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(memLimit) {
		t.Fatalf("memory.max reads back %q, %v", b, err)
	}
	// No swap in the guest, but say so explicitly where the kernel has the file.
	if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil {
		writeFile(t, filepath.Join(dir, "memory.swap.max"), "0")
	}
	cgfd, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cgfd.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=alloc")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(cgfd.Fd())}
	start := time.Now()
	err = cmd.Run()
	t.Logf("helper ran %s: %v; output: %q", time.Since(start).Round(time.Millisecond), err, out.String())

	wantCg := "0::/" + filepath.Base(dir)
	if !strings.Contains(out.String(), "cgroup: "+wantCg+"\n") {
		t.Errorf("helper did not run in %s (CLONE_INTO_CGROUP failed?): %q", wantCg, out.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("helper allocating %d MiB under memory.max=%d was not killed: err=%v", allocMiB, memLimit, err)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("helper ended with %v, want killed by SIGKILL", ee)
	}
	if strings.Contains(out.String(), "allocated") {
		t.Errorf("helper finished its allocation under memory.max")
	}
	if n := memoryEvent(t, dir, "oom_kill"); n < 1 {
		t.Errorf("memory.events oom_kill = %d, want >= 1", n)
	}
}

func writeFile(t *testing.T, path, v string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(v), 0); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

func memoryEvent(t *testing.T, dir, key string) int {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "memory.events"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), " "); ok && k == key {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("memory.events %s: %v", key, err)
			}
			return n
		}
	}
	t.Fatalf("memory.events has no %s line", key)
	return 0
}
