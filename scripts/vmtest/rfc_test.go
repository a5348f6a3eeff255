package main

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeBzImage writes a file with an x86 setup header whose kernel_version points at
// version.
func fakeBzImage(t *testing.T, version string) string {
	t.Helper()
	b := make([]byte, 0x1000)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x20e:], 0x600-0x200)
	copy(b[0x600:], version+"\x00garbage")
	p := filepath.Join(t.TempDir(), "bzImage")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBzImageRelease(t *testing.T) {
	p := fakeBzImage(t, "6.12.118+ (root@vm) #1 SMP Thu Dec  3 08:29:09 UTC 2026")
	if rel, err := bzImageRelease(p); err != nil || rel != "6.12.118+" {
		t.Fatalf("release %q, %v", rel, err)
	}
	notImage := filepath.Join(t.TempDir(), "x")
	if err := os.WriteFile(notImage, make([]byte, 0x300), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := bzImageRelease(notImage); err == nil || !strings.Contains(err.Error(), "HdrS") {
		t.Fatalf("not a bzImage: %v", err)
	}
	k, err := rfcKernel(p)
	if err != nil || k.Series != rfcSeries || k.Release != "6.12.118+" || k.Vmlinuz != p || len(k.Env) == 0 {
		t.Fatalf("rfcKernel = %+v, %v", k, err)
	}
}

// A missing image: an RFC-only run skips naming the path; CI=true fails instead; a
// run with other kernels leaves it out.
func TestRFCImageMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no", "bzImage")
	c := &config{rfcKernel: missing, kernels: []string{rfcSeries}}
	_, err := c.rfcImage()
	var skip *skipError
	if !errors.As(err, &skip) || skip.reason != "no RFC kernel image at "+missing+" (set VMTEST_RFC_KERNEL to its path)" {
		t.Fatalf("rfc only, no CI: %v, want a skip naming %s", err, missing)
	}
	c.ci = true
	if _, err := c.rfcImage(); err == nil || errors.As(err, &skip) || !strings.Contains(err.Error(), "CI=true") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("CI=true: %v, want a failure naming the path", err)
	}
	c.ci, c.kernels = false, []string{"6.12", rfcSeries}
	if k, err := c.rfcImage(); err != nil || k.Vmlinuz != "" {
		t.Fatalf("with another kernel: %+v, %v; want it left out", k, err)
	}
	// The whole tier: the skip comes before anything is installed or built.
	c = &config{rfcKernel: missing, kernels: []string{rfcSeries}, cache: t.TempDir(), timeout: time.Minute}
	if _, err := runTier(context.Background(), c, "run", time.Now()); !errors.As(err, &skip) {
		t.Fatalf("runTier without the image: %v, want a skip", err)
	}
	c.ci = true
	if _, err := runTier(context.Background(), c, "run", time.Now()); err == nil || errors.As(err, &skip) {
		t.Fatalf("runTier without the image under CI: %v, want a failure", err)
	}
}

func TestTestsIn(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"a_test.go":        "package p\nimport \"testing\"\nfunc TestMain(m *testing.M) {}\nfunc TestB(t *testing.T) {}\nfunc helper() {}\n",
		"kernel_x_test.go": "package p\nimport \"testing\"\nfunc TestA(t *testing.T) {}\ntype r struct{}\nfunc (r) TestNot() {}\n",
		"other_test.go":    "package p\nimport \"testing\"\nfunc TestOther(t *testing.T) {}\n",
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if re, err := testsIn(dir, []string{"a_test.go", "kernel_*_test.go"}); err != nil || re != "^(TestA|TestB)$" {
		t.Fatalf("testsIn = %q, %v", re, err)
	}
	if _, err := testsIn(dir, []string{"missing_*_test.go"}); err == nil {
		t.Fatal("a glob matching nothing is not an error")
	}
}
