package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSelfTest runs the built harness against the guest fixtures in
// testdata/fixtures and checks that each failure mode is reported as a failure.
// It boots real guests (about a minute in all), so it runs only with
// VMTEST_SELFTEST=1; it uses the usual cache (VMTEST_CACHE) and installs what is
// missing like `make vmtest` does.
func TestSelfTest(t *testing.T) {
	if os.Getenv("VMTEST_SELFTEST") != "1" {
		t.Skip("boots QEMU guests; set VMTEST_SELFTEST=1 to run")
	}
	bin := filepath.Join(t.TempDir(), "vmtest")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build harness: %v\n%s", err, out)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	kernels := os.Getenv("VMTEST_KERNELS")
	if kernels == "" {
		kernels = "6.1"
	}
	fakebin := t.TempDir()
	for _, c := range []string{"apt-get", "apt-cache"} {
		script := "#!/bin/sh\necho 'E: Temporary failure resolving deb.debian.org' >&2\nexit 100\n"
		if err := os.WriteFile(filepath.Join(fakebin, c), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []string{"qemu-system-x86_64", "go", "dpkg-deb"} {
		p, err := exec.LookPath(c)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if err := os.Symlink(p, filepath.Join(fakebin, c)); err != nil {
			t.Fatal(err)
		}
	}

	for _, tc := range []struct {
		name     string
		env      []string
		wantCode int
		want     []string
	}{
		{"pass", []string{"VMTEST_RUN=^TestFixturePass$", "VMTEST_ENV=VMTEST_FIXTURE_WORD=world"}, exitPass,
			[]string{"--- PASS: TestFixturePass", "PASS: 1 guest runs"}},
		{"fail", []string{"VMTEST_RUN=^TestFixtureFail$"}, exitFail,
			[]string{"deliberate failure", "(test binary exit status 1)"}},
		{"poweroff", []string{"VMTEST_RUN=^TestFixturePowerOff$"}, exitFail,
			[]string{"guest died without an exit-code line", "reboot: Power down"}},
		{"timeout", []string{"VMTEST_RUN=^TestFixtureHang$", "VMTEST_ARGS=-test.timeout=0", "VMTEST_TIMEOUT=15s"}, exitFail,
			[]string{"guest timed out after 15s"}},
		{"build-error", []string{"VMTEST_PKGS=./scripts/vmtest/testdata/broken"}, exitFail,
			[]string{"test binary did not build", "FAIL: 1 guest runs"}},
		{"no-such-package", []string{"VMTEST_PKGS=./scripts/vmtest/testdata/nosuchpkg"}, exitFail,
			[]string{"VMTEST_PKGS"}},
		{"skip", []string{"PATH=" + fakebin, "VMTEST_CACHE=" + t.TempDir()}, exitSkip,
			[]string{"SKIP: cannot get a Debian", "Temporary failure resolving"}},
		{"skip-allowed", []string{"PATH=" + fakebin, "VMTEST_CACHE=" + t.TempDir(), "VMTEST_ALLOW_SKIP=1"}, exitPass,
			[]string{"SKIP: cannot get a Debian"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin, "run")
			cmd.Dir = root
			out := t.TempDir()
			cmd.Env = append(os.Environ(), "VMTEST_PKGS=./scripts/vmtest/testdata/fixtures",
				"VMTEST_KERNELS="+kernels, "VMTEST_OUT="+out)
			cmd.Env = append(cmd.Env, tc.env...)
			output, _ := cmd.CombinedOutput()
			if got := cmd.ProcessState.ExitCode(); got != tc.wantCode {
				t.Errorf("exit code %d, want %d", got, tc.wantCode)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(output), w) {
					t.Errorf("output lacks %q", w)
				}
			}
			if tc.name == "pass" {
				// The file the guest left in $VMTEST_OUTDIR, carried out over ttyS3.
				k := strings.Fields(kernels)[0]
				p := filepath.Join(out, k, "scripts_vmtest_testdata_fixtures", "files", "sub", "hello.txt")
				if b, err := os.ReadFile(p); err != nil || string(b) != "hello world\n" {
					t.Errorf("guest output file %s: %q, %v", p, b, err)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", output)
			}
		})
	}
}
