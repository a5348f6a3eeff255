package agentexec

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/agentexec/agentexec/internal/templates"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

var (
	notAvailable = templates.Probe{Reason: "kallsyms has no such names", Conclusive: true}
	available    = templates.Probe{Available: true, Reason: "yes", Conclusive: true}
)

// A conclusive "not available" is remembered for the boot; availability never is.
// Root's cache is the root-only /run/agentexec.
func TestProbeCache(t *testing.T) {
	testutil.RequireRoot(t)
	t.Setenv(templates.SyscallNumbersEnv, "")
	dir, key, ok := probeCacheKey(1, 2)
	if !ok {
		t.Skip("no /proc/sys/kernel/random/boot_id")
	}
	if dir != probeCacheDir {
		t.Fatalf("root's cache directory %s, want %s", dir, probeCacheDir)
	}
	file := filepath.Join(dir, key)
	defer os.Remove(file)
	os.Remove(file)
	if _, ok := readProbeCache(dir, key); ok {
		t.Fatal("cache hit before any write")
	}
	writeProbeCache(dir, key, available)
	if _, ok := readProbeCache(dir, key); ok {
		t.Fatal("a positive probe was cached")
	}
	writeProbeCache(dir, key, notAvailable)
	p, ok := readProbeCache(dir, key)
	if !ok || p.Available || p.Source != "cache" || p.Reason != "kallsyms has no such names (remembered for this boot)" {
		t.Fatalf("cached probe %+v ok %v", p, ok)
	}
	_, other, _ := probeCacheKey(1, 3)
	if _, ok := readProbeCache(dir, other); ok {
		t.Fatal("cache hit for other syscall numbers")
	}
	// Numbers from the environment are never cached.
	t.Setenv(templates.SyscallNumbersEnv, "1,2")
	if _, _, ok := probeCacheKey(1, 2); ok {
		t.Fatal("a cache key with AGENTEXEC_SPAWN_TEMPLATE_SYSCALLS set")
	}
}

// The cache file's name changes with the boot, the kernel release and the numbers,
// so that a reboot or a new kernel probes again; odd characters cannot make a path.
func TestProbeCacheName(t *testing.T) {
	base := probeCacheName("boot-1", "6.1.0-13-amd64", 472, 473)
	for _, other := range []string{
		probeCacheName("boot-2", "6.1.0-13-amd64", 472, 473),
		probeCacheName("boot-1", "6.12.0", 472, 473),
		probeCacheName("boot-1", "6.1.0-13-amd64", 480, 481),
	} {
		if other == base {
			t.Errorf("%s: same name for another boot, kernel or numbers", other)
		}
	}
	if n := probeCacheName("../x", "a/b c", 1, 2); strings.ContainsAny(n, "/ ") {
		t.Errorf("name %q holds a separator", n)
	}
}

// A non-root user's cache: the first probe's "not available" is found by the next
// process; a file or directory another user owns, or that others may write to, is
// ignored (each case with its control: the same file accepted before the change).
func TestProbeCacheUserFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "agentexec")
	key := probeCacheName("boot", "release", 472, 473)
	file := filepath.Join(dir, key)
	if _, ok := readProbeCache(dir, key); ok {
		t.Fatal("hit in a missing directory")
	}
	writeProbeCache(dir, key, available)
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("a positive probe was written: %v", err)
	}
	writeProbeCache(dir, key, templates.Probe{Reason: "inconclusive"})
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Fatalf("an inconclusive probe was written: %v", err)
	}
	writeProbeCache(dir, key, notAvailable)
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("cache directory: %v, mode %v (want 0700)", err, st.Mode().Perm())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("cache directory holds %d entries, want the one file (no temporary left)", len(ents))
	}
	accepted := func() bool {
		t.Helper()
		p, ok := readProbeCache(dir, key)
		if ok && (p.Available || p.Source != "cache" || !p.Conclusive) {
			t.Fatalf("cached probe %+v", p)
		}
		return ok
	}
	if !accepted() {
		t.Fatal("control: the user's own 0600 file was not read")
	}

	// Group- or world-writable file: anyone could have written it.
	for _, mode := range []os.FileMode{0o620, 0o602} {
		if err := os.Chmod(file, mode); err != nil {
			t.Fatal(err)
		}
		if accepted() {
			t.Errorf("file mode %v accepted", mode)
		}
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if !accepted() {
		t.Fatal("control: a 0644 file of the user was not read")
	}

	// Directory others may enter or write to.
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if accepted() {
		t.Error("directory mode 0777 accepted")
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}

	// A symlink in place of the file (to a file the user owns).
	real := filepath.Join(t.TempDir(), "real")
	if err := os.WriteFile(real, []byte("planted"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := probeCacheName("boot", "release", 1, 1)
	if err := os.Symlink(real, filepath.Join(dir, link)); err != nil {
		t.Fatal(err)
	}
	if _, ok := readProbeCache(dir, link); ok {
		t.Error("a symlinked cache file was followed")
	}

	// Files and directories of another user (needs root to make them).
	if os.Geteuid() != 0 {
		t.Log("not root: the other-owner cases need chown; skipped")
		return
	}
	if !accepted() {
		t.Fatal("control: file not read before chown")
	}
	if err := os.Chown(file, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if accepted() {
		t.Error("a file owned by uid 65534 accepted")
	}
	if err := os.Chown(file, 0, 0); err != nil {
		t.Fatal(err)
	}
	if !accepted() {
		t.Fatal("control: file not read after chown back")
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if accepted() {
		t.Error("a directory owned by uid 65534 accepted")
	}
	// And nothing is written into it.
	key2 := probeCacheName("boot", "release", 5, 6)
	writeProbeCache(dir, key2, notAvailable)
	if _, err := os.Stat(filepath.Join(dir, key2)); !os.IsNotExist(err) {
		t.Errorf("written into another user's directory: %v", err)
	}
}

// A non-root user's cache directory: $XDG_RUNTIME_DIR when it is the user's own
// private directory, else the user cache directory.
func TestUserProbeCacheDir(t *testing.T) {
	run := t.TempDir()
	if err := os.Chmod(run, 0o700); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("XDG_RUNTIME_DIR", run)
	if got := userProbeCacheDir(); got != filepath.Join(run, "agentexec") {
		t.Errorf("with a private XDG_RUNTIME_DIR: %s, want it", got)
	}
	// World-writable: not the user's private directory.
	if err := os.Chmod(run, 0o777); err != nil {
		t.Fatal(err)
	}
	if got := userProbeCacheDir(); got == filepath.Join(run, "agentexec") {
		t.Error("a world-writable XDG_RUNTIME_DIR was used")
	}
	t.Setenv("XDG_RUNTIME_DIR", "relative/dir")
	got := userProbeCacheDir()
	if strings.HasPrefix(got, "relative") {
		t.Errorf("a relative XDG_RUNTIME_DIR was used: %s", got)
	}
	if _, err := os.Stat("/run/user/" + strconv.Itoa(os.Geteuid())); err != nil && got != filepath.Join(cache, "agentexec") {
		t.Errorf("without a runtime directory: %s, want the cache directory %s", got, filepath.Join(cache, "agentexec"))
	}
	// No usable cache directory (HOME=/nonexistent, as for nobody): agentexec-UID
	// in the temporary directory.
	tmp := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", "/nonexistent/.cache")
	t.Setenv("TMPDIR", tmp)
	got = userProbeCacheDir()
	if _, err := os.Stat("/run/user/" + strconv.Itoa(os.Geteuid())); err != nil && got != filepath.Join(tmp, "agentexec-"+strconv.Itoa(os.Geteuid())) {
		t.Errorf("without a cache directory: %s, want agentexec-UID in %s", got, tmp)
	}
	// One that another user made first is ignored (privateDir, above).
}

// The probe is skipped where no kernel template can be made: kernel_templates: off,
// or auto without hot tools. require always probes (its error names what is missing).
func TestKernelProbeSkipped(t *testing.T) {
	hot := []*policy.Tool{{Name: "cold"}, {Name: "hot", Hot: true}}
	cold := []*policy.Tool{{Name: "cold"}}
	for _, c := range []struct {
		mode  policy.KernelTemplates
		tools []*policy.Tool
		skip  bool
	}{
		{policy.KernelTemplatesOff, hot, true},
		{policy.KernelTemplatesAuto, cold, true},
		{"", cold, true},
		{policy.KernelTemplatesAuto, hot, false},
		{"", hot, false},
		{policy.KernelTemplatesRequire, cold, false},
	} {
		why := kernelProbeSkipped(&policy.Policy{KernelTemplates: c.mode, Tools: c.tools})
		if (why != "") != c.skip {
			t.Errorf("mode %q, %d tools: skipped %q, want skipped %v", c.mode, len(c.tools), why, c.skip)
		}
	}
	if why := kernelProbeSkipped(nil); why != "" {
		t.Errorf("no policy: skipped (%s)", why)
	}
}
