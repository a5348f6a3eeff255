// Command vmtest is agentexec's VM test tier: it runs Go test packages inside QEMU
// guests booted from stock Debian kernels with a pure cgroup v2 hierarchy, one guest
// per (kernel, package), and reports the results. See docs/vmtest.md.
//
// Usage:
//
//	go build -o vmtest ./scripts/vmtest && ./vmtest [run|deps]
//
// "run" (the default) installs what is missing, builds and runs the tests; "deps"
// only installs the packages, fetches the kernels and builds the base initramfs.
// Configuration is by environment variables (VMTEST_*), listed in docs/vmtest.md.
//
// Exit status: 0 all passed; 1 a test failed, a guest died or timed out, or a test
// binary did not build; 2 usage error; 3 skipped because prerequisites cannot be had
// (0 instead when VMTEST_ALLOW_SKIP=1).
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	exitPass  = 0
	exitFail  = 1
	exitUsage = 2
	exitSkip  = 3
)

// defaultPkgs are tested when VMTEST_PKGS is unset; those that do not exist or have
// no tests are left out.
var defaultPkgs = []string{"./scripts/vmtest/guestcheck", "./internal/cgroup", "./internal/spawner", "."}

var defaultKernels = []string{"6.12", "6.1"}

type config struct {
	cache        string
	pkgs         []string
	pkgsExplicit bool
	kernels      []string
	run          string
	args         []string
	env          []string
	timeout      time.Duration
	allowSkip    bool
	accel        string
	mem          string
	smp          int
	jobs         int
	out          string
	quiet        bool
	// rfcKernel is the image of the spawn_template RFC test kernel (kernel "rfc").
	rfcKernel string
	// ci: CI=true, where a missing RFC kernel image fails the run instead of skipping.
	ci bool
}

func getenv(k, def string) string {
	if v, ok := os.LookupEnv(k); ok && v != "" {
		return v
	}
	return def
}

func loadConfig() (*config, error) {
	c := &config{}
	c.cache = os.Getenv("VMTEST_CACHE")
	if c.cache == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return nil, fmt.Errorf("VMTEST_CACHE unset and no home directory: %w", err)
			}
			base = filepath.Join(home, ".cache")
		}
		c.cache = filepath.Join(base, "agentexec-vmtest")
	}
	if abs, err := filepath.Abs(c.cache); err == nil {
		c.cache = abs
	}
	c.kernels = strings.Fields(getenv("VMTEST_KERNELS", strings.Join(defaultKernels, " ")))
	onlyRFC := true
	for _, k := range c.kernels {
		if k == rfcSeries {
			continue
		}
		onlyRFC = false
		if !regexp.MustCompile(`^[0-9]+\.[0-9]+$`).MatchString(k) {
			return nil, fmt.Errorf("VMTEST_KERNELS: %q is not a kernel series like 6.12 (or %q, the spawn_template RFC test kernel)", k, rfcSeries)
		}
	}
	if v := os.Getenv("VMTEST_PKGS"); strings.TrimSpace(v) != "" {
		c.pkgs, c.pkgsExplicit = strings.Fields(v), true
	} else if onlyRFC {
		c.pkgs = rfcDefaultPkgs
	} else {
		c.pkgs = defaultPkgs
	}
	c.rfcKernel = os.Getenv("VMTEST_RFC_KERNEL")
	if c.rfcKernel == "" {
		c.rfcKernel = defaultRFCKernel()
	}
	c.ci = os.Getenv("CI") == "true"
	c.run = os.Getenv("VMTEST_RUN")
	c.args = strings.Fields(os.Getenv("VMTEST_ARGS"))
	c.env = strings.Fields(os.Getenv("VMTEST_ENV"))
	for _, kv := range c.env {
		if !strings.Contains(kv, "=") {
			return nil, fmt.Errorf("VMTEST_ENV: %q is not NAME=VALUE", kv)
		}
	}
	var err error
	if c.timeout, err = time.ParseDuration(getenv("VMTEST_TIMEOUT", "300s")); err != nil || c.timeout < 10*time.Second {
		return nil, fmt.Errorf("VMTEST_TIMEOUT=%q: want a duration of at least 10s (e.g. 300s)", os.Getenv("VMTEST_TIMEOUT"))
	}
	c.allowSkip = os.Getenv("VMTEST_ALLOW_SKIP") == "1"
	c.accel = getenv("VMTEST_ACCEL", "auto")
	switch c.accel {
	case "auto", "tcg", "kvm":
	default:
		return nil, fmt.Errorf("VMTEST_ACCEL=%q: want auto, tcg or kvm", c.accel)
	}
	c.mem = getenv("VMTEST_MEM", "1024")
	if c.smp, err = strconv.Atoi(getenv("VMTEST_SMP", "2")); err != nil || c.smp < 1 {
		return nil, fmt.Errorf("VMTEST_SMP=%q: want a positive integer", os.Getenv("VMTEST_SMP"))
	}
	if c.jobs, err = strconv.Atoi(getenv("VMTEST_JOBS", "1")); err != nil || c.jobs < 1 {
		return nil, fmt.Errorf("VMTEST_JOBS=%q: want a positive integer", os.Getenv("VMTEST_JOBS"))
	}
	c.out = os.Getenv("VMTEST_OUT")
	c.quiet = os.Getenv("VMTEST_QUIET") == "1"
	return c, nil
}

func main() {
	os.Exit(realMain())
}

var logMu sync.Mutex

func logf(format string, args ...any) {
	logMu.Lock()
	defer logMu.Unlock()
	fmt.Fprintf(os.Stdout, "vmtest: "+format+"\n", args...)
}

// lockedWriter serialises lines written by concurrent guests.
type lockedWriter struct{}

func (lockedWriter) Write(b []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	return os.Stdout.Write(b)
}

func realMain() int {
	mode := "run"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	if mode != "run" && mode != "deps" || len(os.Args) > 2 {
		fmt.Fprintf(os.Stderr, "usage: vmtest [run|deps]  (configuration: VMTEST_* variables, see docs/vmtest.md)\n")
		return exitUsage
	}
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmtest: %v\n", err)
		return exitUsage
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()

	start := time.Now()
	code, err := runTier(ctx, cfg, mode, start)
	var skip *skipError
	switch {
	case errors.As(err, &skip):
		fmt.Printf("SKIP: %s\n", skip.reason)
		if cfg.allowSkip {
			fmt.Printf("vmtest: skipped: %s; VMTEST_ALLOW_SKIP=1, exiting 0 (total %s)\n", skip.reason, time.Since(start).Round(100*time.Millisecond))
			return exitPass
		}
		fmt.Printf("vmtest: exiting %d (skipped); set VMTEST_ALLOW_SKIP=1 to exit 0 instead\n", exitSkip)
		return exitSkip
	case err != nil:
		fmt.Printf("FAIL: %v (total %s)\n", err, time.Since(start).Round(100*time.Millisecond))
		return exitFail
	}
	return code
}

// pkgBuild is one test package and its built test binary.
type pkgBuild struct {
	arg      string // as given in VMTEST_PKGS
	name     string // short label
	dir      string
	testbin  string
	initrd   string
	buildErr error
	// run is the package's own -test.run (from PKG@FILES), unless VMTEST_RUN is
	// set; entry is the VMTEST_PKGS word then.
	run, entry string
}

// label is how the summary names the package.
func (p *pkgBuild) label() string {
	if p.entry != "" {
		return p.entry
	}
	return p.arg
}

// runResult is one (kernel, package) row of the summary.
type runResult struct {
	kernel kernel
	pkg    *pkgBuild
	res    guestResult
}

func runTier(ctx context.Context, cfg *config, mode string, start time.Time) (int, error) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		return 0, skipf("the VM tier needs a linux/amd64 host, this is %s/%s", runtime.GOOS, runtime.GOARCH)
	}
	if err := os.MkdirAll(cfg.cache, 0o755); err != nil {
		return 0, skipf("cannot create cache dir %s: %v", cfg.cache, err)
	}
	// The RFC kernel's image first: without it an RFC-only run has nothing to do.
	if slices.Contains(cfg.kernels, rfcSeries) && (cfg.ci || len(cfg.kernels) == 1) {
		if _, err := cfg.rfcImage(); err != nil {
			return 0, err
		}
	}
	a := &apt{log: logf}

	// 1. Host tools and kernels.
	t0 := time.Now()
	tl, err := ensureTools(ctx, a)
	if err != nil {
		return 0, err
	}
	var kernels []kernel
	rfc := false
	for _, s := range cfg.kernels {
		var k kernel
		var err error
		if s == rfcSeries {
			if k, err = cfg.rfcImage(); err != nil {
				return 0, err
			}
			if k.Vmlinuz == "" {
				continue // absent, and the run has other kernels
			}
			rfc = true
		} else if k, err = resolveKernel(ctx, a, cfg.cache, s); err != nil {
			return 0, err
		}
		logf("kernel %s: %s (%s)", s, k.Release, k.Vmlinuz)
		kernels = append(kernels, k)
	}
	base, err := baseInitramfs(cfg.cache, tl.busybox)
	if err != nil {
		return 0, fmt.Errorf("build base initramfs: %w", err)
	}
	logf("base initramfs: %s", base)
	logf("prerequisites ready in %s", time.Since(t0).Round(100*time.Millisecond))
	if mode == "deps" {
		return exitPass, nil
	}
	if err := ctx.Err(); err != nil {
		return 0, errInterrupted
	}

	// 2. Run directory.
	runDir := cfg.out
	if runDir == "" {
		runs := filepath.Join(cfg.cache, "runs")
		if err := os.MkdirAll(runs, 0o755); err != nil {
			return 0, err
		}
		pruneRuns(runs, 5)
		runDir, err = os.MkdirTemp(runs, time.Now().Format("20060102-150405-"))
		if err != nil {
			return 0, err
		}
	} else if err := os.MkdirAll(runDir, 0o755); err != nil {
		return 0, err
	}
	logf("logs: %s", runDir)

	// 3. Test binaries.
	t1 := time.Now()
	pkgs, err := listPkgs(ctx, cfg)
	if err != nil {
		return 0, err
	}
	testArgs := []string{"-test.v", "-test.timeout=" + testTimeout(cfg.timeout).String()}
	if cfg.run != "" {
		testArgs = append(testArgs, "-test.run="+cfg.run)
	}
	testArgs = append(testArgs, cfg.args...)
	// RFC guests carry a static agentexec (the end-to-end tests run it).
	var extra map[string]string
	if rfc {
		dir := filepath.Join(runDir, "build", ".bin") // beside the packages' build dirs
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return 0, err
		}
		bin, err := buildAgentexec(dir)
		if err != nil {
			return 0, fmt.Errorf("RFC tier: %w", err)
		}
		extra = map[string]string{guestAgentexec: bin}
	}
	for _, p := range pkgs {
		args := testArgs
		if p.run != "" && cfg.run == "" {
			args = append(append([]string(nil), testArgs...), "-test.run="+p.run)
		}
		p.buildErr = buildPkg(ctx, p, runDir, base, args, cfg.env, extra)
		if p.buildErr != nil {
			logf("build %s: %v", p.arg, p.buildErr)
		}
	}
	logf("test binaries built in %s", time.Since(t1).Round(100*time.Millisecond))

	// 4. Accelerator.
	accel := chooseAccel(ctx, cfg, tl, kernels, base, runDir)
	logf("accelerator: %s", accel)

	// 5. The matrix.
	var results []*runResult
	for _, k := range kernels {
		for _, p := range pkgs {
			results = append(results, &runResult{kernel: k, pkg: p})
		}
	}
	sem := make(chan struct{}, cfg.jobs)
	var wg sync.WaitGroup
	for _, r := range results {
		if r.pkg.buildErr != nil {
			r.res = guestResult{ExitCode: -1, Err: fmt.Errorf("test binary did not build: %w", r.pkg.buildErr)}
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if ctx.Err() != nil {
				r.res = guestResult{ExitCode: -1, Err: errInterrupted}
				return
			}
			label := fmt.Sprintf("%s %s", r.kernel.Series, r.pkg.name)
			logf("=== boot %s (kernel %s)", label, r.kernel.Release)
			g := &guest{
				qemu: tl.qemu, kernel: r.kernel, initrd: r.pkg.initrd,
				dir:   filepath.Join(runDir, r.kernel.Series, r.pkg.name),
				accel: accel, mem: cfg.mem, smp: cfg.smp, timeout: cfg.timeout,
				prefix: "[" + label + "] ",
			}
			if !cfg.quiet {
				g.stream = lockedWriter{}
			}
			r.res = g.run(ctx)
			status := "PASS"
			if !r.res.Passed() {
				status = "FAIL"
			}
			logf("=== %s %s in %s", status, label, r.res.Elapsed.Round(100*time.Millisecond))
		}()
	}
	wg.Wait()

	// 6. Summary.
	if cfg.quiet {
		printFailureExcerpts(results, runDir)
	}
	failed := printSummary(results, accel, runDir, start)
	if ctx.Err() != nil {
		return exitFail, errInterrupted
	}
	if failed {
		return exitFail, nil
	}
	return exitPass, nil
}

// testTimeout leaves the guest time to boot and report after -test.timeout fires,
// so that a hung test shows Go's goroutine dump rather than a bare guest timeout.
func testTimeout(guest time.Duration) time.Duration {
	t := guest - 30*time.Second
	if t < guest*3/4 {
		t = guest * 3 / 4
	}
	return t
}

func listPkgs(ctx context.Context, cfg *config) ([]*pkgBuild, error) {
	var pkgs []*pkgBuild
	seen := map[string]bool{}
	for _, entry := range cfg.pkgs {
		// PKG@GLOB,GLOB: only the tests declared in those files of the package.
		arg, files, _ := strings.Cut(entry, "@")
		out, err := exec.CommandContext(ctx, "go", "list", "-e", "-f",
			"{{.ImportPath}}\t{{.Dir}}\t{{len .TestGoFiles}}\t{{len .XTestGoFiles}}", arg).CombinedOutput()
		fields := strings.Split(strings.TrimSpace(string(out)), "\t")
		if err != nil || len(fields) != 4 {
			if cfg.pkgsExplicit {
				return nil, fmt.Errorf("VMTEST_PKGS: go list %s: %w: %s", arg, err, strings.TrimSpace(string(out)))
			}
			logf("package %s: not present, left out", arg)
			continue
		}
		if fields[2] == "0" && fields[3] == "0" {
			if _, serr := os.Stat(fields[1]); serr != nil && cfg.pkgsExplicit {
				return nil, fmt.Errorf("VMTEST_PKGS: package %s does not exist", arg)
			}
			logf("package %s: no test files, left out", arg)
			continue
		}
		if seen[fields[0]] {
			continue
		}
		seen[fields[0]] = true
		p := &pkgBuild{arg: arg, name: pkgLabel(arg, fields[0]), dir: fields[1]}
		if files != "" {
			re, err := testsIn(p.dir, strings.Split(files, ","))
			if err != nil {
				return nil, fmt.Errorf("VMTEST_PKGS: %s: %w", entry, err)
			}
			p.run, p.entry = re, entry
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("no test packages to run (VMTEST_PKGS=%q)", strings.Join(cfg.pkgs, " "))
	}
	return pkgs, nil
}

// pkgLabel is a file-name-safe label for a package argument.
func pkgLabel(arg, importPath string) string {
	s := strings.Trim(filepath.ToSlash(filepath.Clean(arg)), "./")
	if s == "" {
		s = filepath.Base(importPath)
	}
	return strings.NewReplacer("/", "_", ".", "_").Replace(s)
}

// buildPkg builds the static test binary and the package's initramfs (base + one
// appended archive).
func buildPkg(ctx context.Context, p *pkgBuild, runDir, base string, testArgs, env []string, extra map[string]string) error {
	dir := filepath.Join(runDir, "build", p.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p.testbin = filepath.Join(dir, p.name+".test")
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", p.testbin, p.arg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("CGO_ENABLED=0 go test -c %s: %w\n%s", p.arg, err, strings.TrimSpace(string(out)))
	}
	if _, err := os.Stat(p.testbin); err != nil {
		return fmt.Errorf("go test -c %s produced no binary: %w", p.arg, err)
	}
	if err := checkStatic(p.testbin); err != nil {
		return fmt.Errorf("test binary: %w", err)
	}
	pkgArchive := filepath.Join(dir, "pkg.cpio")
	f, err := os.Create(pkgArchive)
	if err != nil {
		return err
	}
	werr := writePackageArchive(f, p.testbin, testArgs, env, p.dir, extra)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return fmt.Errorf("write %s: %w", pkgArchive, werr)
	}
	p.initrd = filepath.Join(dir, "initrd.cpio")
	return concatFiles(p.initrd, base, pkgArchive)
}

// chooseAccel returns "kvm" only when asked for or when the host CPU advertises
// vmx/svm, /dev/kvm opens, and a probe guest actually boots under KVM on every
// kernel of the matrix (a paravirtual nested /dev/kvm creates VMs, but stock kernels
// die in it with "KVM internal error"). Otherwise "tcg".
func chooseAccel(ctx context.Context, cfg *config, tl tools, kernels []kernel, base, runDir string) string {
	switch cfg.accel {
	case "tcg", "kvm":
		return cfg.accel
	}
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil || !regexp.MustCompile(`(?m)^flags\s*:.*\b(vmx|svm)\b`).Match(cpuinfo) {
		logf("KVM not used: /proc/cpuinfo has no vmx or svm flag")
		return "tcg"
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		logf("KVM not used: %v", err)
		return "tcg"
	}
	f.Close()
	for _, k := range kernels {
		g := &guest{qemu: tl.qemu, kernel: k, initrd: base, dir: filepath.Join(runDir, "kvm-probe", k.Series),
			accel: "kvm", mem: cfg.mem, smp: cfg.smp, timeout: 60 * time.Second}
		r := g.run(ctx)
		// The base initramfs has no test binary: /init reports exit code 126.
		if r.Err != nil || r.ExitCode != 126 {
			logf("KVM not used: probe guest on %s did not boot (exit %d, %v)", k.Release, r.ExitCode, r.Err)
			return "tcg"
		}
	}
	return "kvm"
}

func printSummary(results []*runResult, accel, runDir string, start time.Time) (failed bool) {
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	logMu.Lock()
	defer logMu.Unlock()
	fmt.Fprintf(w, "\n=== vmtest summary (accelerator %s) ===\n", accel)
	fmt.Fprintf(w, "%-6s %-28s %-36s %-6s %8s\n", "SERIES", "KERNEL", "PACKAGE", "RESULT", "TIME")
	for _, r := range results {
		status := "PASS"
		detail := ""
		if !r.res.Passed() {
			status, failed = "FAIL", true
			switch {
			case r.res.Err != nil && r.res.ExitCode >= 0:
				detail = fmt.Sprintf("exit %d; %v", r.res.ExitCode, r.res.Err)
			case r.res.Err != nil:
				detail = r.res.Err.Error()
			default:
				detail = fmt.Sprintf("test binary exit status %d", r.res.ExitCode)
			}
		}
		fmt.Fprintf(w, "%-6s %-28s %-36s %-6s %8s", r.kernel.Series, r.kernel.Release, r.pkg.label(), status,
			r.res.Elapsed.Round(100*time.Millisecond))
		if detail != "" {
			if i := strings.IndexByte(detail, '\n'); i >= 0 {
				detail = detail[:i] + " …"
			}
			fmt.Fprintf(w, "  (%s)", detail)
		}
		fmt.Fprintln(w)
	}
	verdict := "PASS"
	if failed {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "%s: %d guest runs, total elapsed %s; logs in %s\n", verdict, len(results),
		time.Since(start).Round(100*time.Millisecond), runDir)
	return failed
}

// pruneRuns keeps the newest keep run directories.
func pruneRuns(dir string, keep int) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for len(names) >= keep {
		os.RemoveAll(filepath.Join(dir, names[0]))
		names = names[1:]
	}
}

// printFailureExcerpts shows, for each failed run, the go test failure lines of its
// output (the stream is not shown with VMTEST_QUIET=1).
func printFailureExcerpts(results []*runResult, runDir string) {
	for _, r := range results {
		if r.res.Passed() || r.pkg.buildErr != nil {
			continue
		}
		log := filepath.Join(runDir, r.kernel.Series, r.pkg.name, outputLog)
		lines := strings.Split(strings.TrimRight(readSmall(log), "\n"), "\n")
		var keep []string
		for i, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), "--- FAIL") || strings.HasPrefix(l, "panic:") {
				// The messages a failing test logged precede its --- FAIL line.
				j := i
				for j > 0 && strings.HasPrefix(lines[j-1], "    ") && i-j < 8 {
					j--
				}
				keep = append(keep, lines[j:i+1]...)
			}
		}
		if len(keep) == 0 {
			keep = lines[max(0, len(lines)-15):]
		}
		if len(keep) > 60 {
			keep = append(keep[:60], fmt.Sprintf("... (%d more lines)", len(keep)-60))
		}
		fmt.Printf("\n--- %s %s failed; %s:\n", r.kernel.Series, r.pkg.arg, log)
		for _, l := range keep {
			fmt.Printf("    %s\n", l)
		}
	}
}
