package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// rfcSeries is the VMTEST_KERNELS word for the test kernel that carries the
// spawn_template RFC series: not a Debian package but an image file
// (VMTEST_RFC_KERNEL, by default ../shared/rfc-kernel/bzImage beside the checkout).
// Only the image is taken from there; the guest is this harness's own.
const rfcSeries = "rfc"

// rfcDefaultPkgs are tested when every kernel of the run is the RFC kernel and
// VMTEST_PKGS is unset: the kernel backend's ABI (internal/sys), the backend itself
// (internal/templates), the runtime with the backend in force (the root package)
// and the end-to-end check (scripts/vmtest/rfccheck, agentexec check and run).
//
// Of the root package only the runtime tests run (runtime_test.go, where the
// backend-aware tests run on both backends, and kernel_*_test.go): the rest of it
// is the stock kernels' business (make vmtest), and some of it needs what this
// small kernel lacks (CONFIG_PROC_CHILDREN for the orphan reaper, the io controller).
// Of internal/spawner only the kernel launcher's own tests (kernel_sweep_test.go).
var rfcDefaultPkgs = []string{"./internal/sys", "./internal/templates", "./scripts/vmtest/rfccheck",
	".@runtime_test.go,kernel_*_test.go", "./internal/spawner@kernel_sweep_test.go"}

// rfcGuestEnv is exported in RFC-kernel guests (through the kernel command line, see
// guest.args): tests of the kernel backend fail there instead of skipping when the
// spawn_template syscalls are not usable, and the end-to-end tests find the static
// agentexec binary the harness brought.
var rfcGuestEnv = []string{"AGENTEXEC_REQUIRE_SPAWN_TEMPLATE=1", "AGENTEXEC_BIN=" + guestAgentexec}

// guestAgentexec is where the static agentexec binary lands in a guest.
const guestAgentexec = "/vmtest/bin/agentexec"

// defaultRFCKernel is the image path when VMTEST_RFC_KERNEL is unset:
// ../shared/rfc-kernel/bzImage relative to the checkout (the module root).
func defaultRFCKernel() string {
	root := moduleRoot()
	return filepath.Join(filepath.Dir(root), "shared", "rfc-kernel", "bzImage")
}

// moduleRoot is the checkout's top directory (where go.mod is), else the working
// directory.
func moduleRoot() string {
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		if m := strings.TrimSpace(string(out)); m != "" && m != os.DevNull {
			return filepath.Dir(m)
		}
	}
	wd, _ := os.Getwd()
	return wd
}

// errNoRFCKernel is the reason an RFC run cannot happen: the image is absent.
type errNoRFCKernel struct{ path string }

func (e *errNoRFCKernel) Error() string {
	return fmt.Sprintf("no RFC kernel image at %s (set VMTEST_RFC_KERNEL to its path)", e.path)
}

// rfcImage returns the RFC kernel of the run. When its image is absent: under CI
// (CI=true) that fails the run, since CI must prove the kernel backend; a run of
// the RFC kernel alone is skipped ("SKIP: no RFC kernel image at PATH"); a run with
// other kernels goes on without it (kernel with an empty Vmlinuz).
func (c *config) rfcImage() (kernel, error) {
	k, err := rfcKernel(c.rfcKernel)
	nok, absent := errors.AsType[*errNoRFCKernel](err)
	switch {
	case !absent:
		return k, err
	case c.ci:
		return kernel{}, fmt.Errorf("%w; CI=true: the RFC kernel tier must run, not skip", nok)
	case len(c.kernels) == 1:
		return kernel{}, &skipError{reason: nok.Error()}
	}
	logf("skipped: %v; kernel %s left out of this run", nok, rfcSeries)
	return kernel{}, nil
}

// rfcKernel describes the RFC test kernel at path. Its release is read from the
// image's setup header (the kernel_version string), so that the summary names it
// without booting it.
func rfcKernel(path string) (kernel, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return kernel{}, err
	}
	st, err := os.Stat(abs)
	if err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
		return kernel{}, &errNoRFCKernel{path: abs}
	}
	rel, err := bzImageRelease(abs)
	if err != nil {
		return kernel{}, fmt.Errorf("RFC kernel image %s: %w", abs, err)
	}
	return kernel{Series: rfcSeries, Package: "(file)", Release: rel, Vmlinuz: abs, Env: rfcGuestEnv}, nil
}

// bzImageRelease reads the release (uname -r) from an x86 bzImage: the setup
// header has "HdrS" at 0x202 and, at 0x20e, the offset (minus 0x200) of the
// NUL-terminated version string "6.12.118+ (user@host) #1 SMP …".
func bzImageRelease(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var hdr [0x210]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return "", fmt.Errorf("read setup header: %w", err)
	}
	if string(hdr[0x202:0x206]) != "HdrS" {
		return "", fmt.Errorf("not an x86 bzImage (no HdrS signature at 0x202)")
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20e:])) + 0x200
	buf := make([]byte, 256)
	n, err := f.ReadAt(buf, off)
	if n == 0 {
		return "", fmt.Errorf("read kernel_version at %#x: %w", off, err)
	}
	s := buf[:n]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	fields := strings.Fields(string(s))
	if len(fields) == 0 {
		return "", fmt.Errorf("empty kernel_version string at %#x", off)
	}
	return fields[0], nil
}

// testsIn returns a -test.run pattern matching exactly the Test functions declared
// in the package directory's files that match the globs.
func testsIn(dir string, globs []string) (string, error) {
	var names []string
	fset := token.NewFileSet()
	for _, g := range globs {
		if g == "" || strings.Contains(g, "/") {
			return "", fmt.Errorf("%q is not a file name pattern", g)
		}
		files, err := filepath.Glob(filepath.Join(dir, g))
		if err != nil {
			return "", err
		}
		if len(files) == 0 {
			return "", fmt.Errorf("no file matches %s in %s", g, dir)
		}
		for _, f := range files {
			af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
			if err != nil {
				return "", err
			}
			for _, d := range af.Decls {
				if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil && strings.HasPrefix(fd.Name.Name, "Test") && fd.Name.Name != "TestMain" {
					names = append(names, fd.Name.Name)
				}
			}
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no Test functions in %s", strings.Join(globs, ","))
	}
	sort.Strings(names)
	return "^(" + strings.Join(names, "|") + ")$", nil
}

// buildAgentexec builds the static agentexec binary that RFC guests carry at
// guestAgentexec (the end-to-end tests run it).
func buildAgentexec(dir string) (string, error) {
	out := filepath.Join(dir, "agentexec")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/agentexec")
	cmd.Dir = moduleRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("CGO_ENABLED=0 go build ./cmd/agentexec: %w\n%s", err, strings.TrimSpace(string(b)))
	}
	if err := checkStatic(out); err != nil {
		return "", err
	}
	return out, nil
}
