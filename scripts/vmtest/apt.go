package main

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// skipError means a prerequisite cannot be had on this machine (no apt, no network,
// not root…). The run then ends with "SKIP: <reason>" and exitSkip.
type skipError struct{ reason string }

func (e *skipError) Error() string { return e.reason }

func skipf(format string, args ...any) error {
	return &skipError{reason: fmt.Sprintf(format, args...)}
}

// apt wraps the Debian package tools. Every change to the system goes through
// apt-get; "apt-get update" runs at most once per harness run, and only when a
// package is unknown or a download fails.
type apt struct {
	updated   bool
	updateErr error
	log       func(format string, args ...any)
}

func (a *apt) cmd(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLines(out.String(), 4))
	}
	return out.String(), nil
}

// update runs apt-get update once.
func (a *apt) update(ctx context.Context) error {
	if a.updated {
		return a.updateErr
	}
	a.updated = true
	a.log("apt-get update")
	_, a.updateErr = a.cmd(ctx, "apt-get", "-q", "-o", "DPkg::Lock::Timeout=300", "update")
	return a.updateErr
}

// install installs Debian packages without recommends, running apt-get update first
// when a package is unknown and retrying once after an update when a fetch fails.
func (a *apt) install(ctx context.Context, pkgs ...string) error {
	if os.Geteuid() != 0 {
		return skipf("packages %s are not installed and installing them needs root (uid is %d); run `make vmtest-deps` as root or install them with apt-get",
			strings.Join(pkgs, " "), os.Geteuid())
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return skipf("packages %s are not installed and apt-get is not available: %v", strings.Join(pkgs, " "), err)
	}
	// Wait for a concurrent apt/dpkg run instead of failing on its lock.
	args := append([]string{"-q", "-y", "-o", "DPkg::Lock::Timeout=300", "install", "--no-install-recommends"}, pkgs...)
	a.log("apt-get install --no-install-recommends %s", strings.Join(pkgs, " "))
	_, err := a.cmd(ctx, "apt-get", args...)
	if err != nil && !a.updated {
		if uerr := a.update(ctx); uerr != nil {
			return skipf("cannot install %s: %v; apt-get update also failed: %v", strings.Join(pkgs, " "), err, uerr)
		}
		_, err = a.cmd(ctx, "apt-get", args...)
	}
	if err != nil {
		return skipf("cannot install %s: %v", strings.Join(pkgs, " "), err)
	}
	return nil
}

// tools are the host programs the harness runs.
type tools struct {
	qemu    string // qemu-system-x86_64
	busybox string // a statically linked busybox
}

const busyboxPath = "/bin/busybox"

// ensureTools finds qemu-system-x86_64 and a static busybox, installing
// qemu-system-x86 and busybox-static when they are missing.
func ensureTools(ctx context.Context, a *apt) (tools, error) {
	var t tools
	var missing []string
	q, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		missing = append(missing, "qemu-system-x86")
	}
	if err := checkStatic(busyboxPath); err != nil {
		missing = append(missing, "busybox-static")
	}
	if len(missing) > 0 {
		if err := a.install(ctx, missing...); err != nil {
			return t, err
		}
		if q, err = exec.LookPath("qemu-system-x86_64"); err != nil {
			return t, skipf("qemu-system-x86_64 not found after installing qemu-system-x86: %v", err)
		}
	}
	if err := checkStatic(busyboxPath); err != nil {
		return t, skipf("after installing busybox-static: %v", err)
	}
	t.qemu, t.busybox = q, busyboxPath
	return t, nil
}

// checkStatic verifies that path is a statically linked ELF executable (no
// PT_INTERP), as the guest has no dynamic loader.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("busybox: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (install busybox-static)", path)
		}
	}
	return nil
}

// kernel is a guest kernel extracted from a Debian package and cached.
type kernel struct {
	Series  string // as asked for: "6.12", "6.1"
	Package string // linux-image-6.12.57+deb13-cloud-amd64
	Release string // uname -r: 6.12.57+deb13-cloud-amd64
	Vmlinuz string // path in the cache (for the RFC kernel: the image file)
	// Env is exported in this kernel's guests (NAME=VALUE words without spaces,
	// passed as vmtest.env= on the kernel command line and exported by /init).
	Env []string
}

const kernelFlavor = "cloud-amd64"

// kernelNameRE matches the package names of one kernel series: for "6.1" it matches
// linux-image-6.1.0-48-cloud-amd64 but not linux-image-6.12.57+deb12-cloud-amd64,
// nor the -dbg and -unsigned variants.
func kernelNameRE(series string) *regexp.Regexp {
	return regexp.MustCompile(`^linux-image-` + regexp.QuoteMeta(series) +
		`([.+~-][0-9A-Za-z.+~-]*)?-` + regexp.QuoteMeta(kernelFlavor) + `$`)
}

var digitsRE = regexp.MustCompile(`[0-9]+`)

// sortKernelNames sorts package names newest first by the numbers in them, so that
// linux-image-6.1.0-48 comes before 6.1.0-9 and before a meta package 6.1.
func sortKernelNames(names []string) {
	key := func(s string) []int {
		var k []int
		for _, d := range digitsRE.FindAllString(strings.TrimSuffix(s, "-"+kernelFlavor), -1) {
			n, _ := strconv.Atoi(d)
			k = append(k, n)
		}
		return k
	}
	sort.SliceStable(names, func(i, j int) bool {
		a, b := key(names[i]), key(names[j])
		for x := 0; x < len(a) && x < len(b); x++ {
			if a[x] != b[x] {
				return a[x] > b[x]
			}
		}
		if len(a) != len(b) {
			return len(a) > len(b)
		}
		return names[i] > names[j]
	})
}

// searchKernels lists the apt-known kernel packages of a series, newest first.
func (a *apt) searchKernels(ctx context.Context, series string) ([]string, error) {
	out, err := a.cmd(ctx, "apt-cache", "search", "--names-only", `^linux-image-`+strings.ReplaceAll(series, ".", `\.`))
	if err != nil {
		return nil, err
	}
	re := kernelNameRE(series)
	var names []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) > 0 && re.MatchString(f[0]) {
			names = append(names, f[0])
		}
	}
	sortKernelNames(names)
	return names, nil
}

// cachedKernel returns the kernel cached for a package, if any.
func cachedKernel(cache, series, pkg string) (kernel, bool) {
	dir := filepath.Join(cache, "kernels", pkg)
	rel, err := os.ReadFile(filepath.Join(dir, "release"))
	if err != nil {
		return kernel{}, false
	}
	vm := filepath.Join(dir, "vmlinuz")
	if _, err := os.Stat(vm); err != nil {
		return kernel{}, false
	}
	return kernel{Series: series, Package: pkg, Release: strings.TrimSpace(string(rel)), Vmlinuz: vm}, true
}

// resolveKernel finds the newest kernel package of a series, and returns its vmlinuz
// from the cache, downloading and extracting it (apt-get download, dpkg-deb -x) when
// it is not cached. Offline, it falls back to the newest cached kernel of the series.
func resolveKernel(ctx context.Context, a *apt, cache, series string) (kernel, error) {
	var errs []error
	for attempt := 0; ; attempt++ {
		names, err := a.searchKernels(ctx, series)
		if err != nil {
			errs = append(errs, err)
		}
		if len(names) > 0 {
			if k, ok := cachedKernel(cache, series, names[0]); ok {
				return k, nil
			}
			k, err := fetchKernel(ctx, a, cache, series, names[0])
			if err == nil {
				return k, nil
			}
			errs = append(errs, err)
		} else if err == nil {
			errs = append(errs, fmt.Errorf("apt knows no package matching %s", kernelNameRE(series)))
		}
		if attempt > 0 || a.updated {
			break
		}
		if uerr := a.update(ctx); uerr != nil {
			errs = append(errs, uerr)
			break
		}
	}
	// Offline fallback: the newest kernel of this series already in the cache.
	ents, _ := os.ReadDir(filepath.Join(cache, "kernels"))
	var cached []string
	re := kernelNameRE(series)
	for _, e := range ents {
		if re.MatchString(e.Name()) {
			cached = append(cached, e.Name())
		}
	}
	sortKernelNames(cached)
	for _, n := range cached {
		if k, ok := cachedKernel(cache, series, n); ok {
			a.log("WARNING: using cached %s; could not get the newest %s kernel: %v", n, series, joinErrs(errs))
			return k, nil
		}
	}
	return kernel{}, skipf("cannot get a Debian %s %s kernel: %v", series, kernelFlavor, joinErrs(errs))
}

// fetchKernel downloads one kernel package and caches its vmlinuz. A meta package
// (no /boot/vmlinuz-*) is followed to the linux-image package it depends on.
func fetchKernel(ctx context.Context, a *apt, cache, series, pkg string) (kernel, error) {
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		return kernel{}, skipf("dpkg-deb not available: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(cache, "kernels"), 0o755); err != nil {
		return kernel{}, err
	}
	for depth := 0; depth < 3; depth++ {
		tmp, err := os.MkdirTemp(filepath.Join(cache, "kernels"), ".download-")
		if err != nil {
			return kernel{}, err
		}
		defer os.RemoveAll(tmp)
		a.log("apt-get download %s", pkg)
		cmd := exec.CommandContext(ctx, "apt-get", "-q", "download", pkg)
		cmd.Dir = tmp
		if out, err := cmd.CombinedOutput(); err != nil {
			return kernel{}, fmt.Errorf("apt-get download %s: %w: %s", pkg, err, lastLines(string(out), 4))
		}
		debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
		if len(debs) != 1 {
			return kernel{}, fmt.Errorf("apt-get download %s: expected one .deb in %s, found %d", pkg, tmp, len(debs))
		}
		x := filepath.Join(tmp, "x")
		if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], x).CombinedOutput(); err != nil {
			return kernel{}, fmt.Errorf("dpkg-deb -x %s: %w: %s", debs[0], err, lastLines(string(out), 4))
		}
		vms, _ := filepath.Glob(filepath.Join(x, "boot", "vmlinuz-*"))
		if len(vms) == 1 {
			release := strings.TrimPrefix(filepath.Base(vms[0]), "vmlinuz-")
			dir := filepath.Join(cache, "kernels", pkg)
			stage := filepath.Join(tmp, "stage")
			if err := os.MkdirAll(stage, 0o755); err != nil {
				return kernel{}, err
			}
			if err := os.Rename(vms[0], filepath.Join(stage, "vmlinuz")); err != nil {
				return kernel{}, err
			}
			if err := os.WriteFile(filepath.Join(stage, "release"), []byte(release+"\n"), 0o644); err != nil {
				return kernel{}, err
			}
			if err := os.Rename(stage, dir); err != nil {
				// Another harness may have cached it meanwhile; else replace a broken entry.
				if k, ok := cachedKernel(cache, series, pkg); ok {
					return k, nil
				}
				os.RemoveAll(dir)
				if err := os.Rename(stage, dir); err != nil {
					return kernel{}, fmt.Errorf("cache %s: %w", pkg, err)
				}
			}
			k, _ := cachedKernel(cache, series, pkg)
			return k, nil
		}
		if len(vms) > 1 {
			return kernel{}, fmt.Errorf("%s holds %d vmlinuz files", pkg, len(vms))
		}
		// A meta package: follow its dependency on a linux-image package.
		out, err := a.cmd(ctx, "apt-cache", "depends", "--important", pkg)
		if err != nil {
			return kernel{}, err
		}
		next := ""
		for _, l := range strings.Split(out, "\n") {
			l = strings.TrimSpace(l)
			if d, ok := strings.CutPrefix(l, "Depends: "); ok && strings.HasPrefix(d, "linux-image-") {
				next = d
				break
			}
		}
		if next == "" {
			return kernel{}, fmt.Errorf("%s has no /boot/vmlinuz-* and no linux-image dependency", pkg)
		}
		if k, ok := cachedKernel(cache, series, next); ok {
			return k, nil
		}
		pkg = next
	}
	return kernel{}, fmt.Errorf("kernel package chain for %s too deep", series)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// joinErrs joins errors on one line, for SKIP messages.
func joinErrs(errs []error) string {
	var s []string
	for _, e := range errs {
		s = append(s, strings.ReplaceAll(e.Error(), "\n", " | "))
	}
	return strings.Join(s, "; ")
}
