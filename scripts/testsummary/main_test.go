package main

import (
	"path/filepath"
	"strings"
	"testing"
)

const stream = `{"Action":"start","Package":"ex/a"}
{"Action":"run","Package":"ex/a","Test":"TestOK"}
{"Action":"output","Package":"ex/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"output","Package":"ex/a","Test":"TestOK","Output":"    a_test.go:3: chatter\n"}
{"Action":"pass","Package":"ex/a","Test":"TestOK"}
{"Action":"run","Package":"ex/a","Test":"TestCgroup"}
{"Action":"output","Package":"ex/a","Test":"TestCgroup","Output":"=== RUN   TestCgroup\n"}
{"Action":"output","Package":"ex/a","Test":"TestCgroup","Output":"    a_test.go:9: requires cgroup v2 controller \"memory\"; /sys/fs/cgroup/unified/cgroup.controllers has \"\"\n"}
{"Action":"output","Package":"ex/a","Test":"TestCgroup","Output":"--- SKIP: TestCgroup (0.00s)\n"}
{"Action":"skip","Package":"ex/a","Test":"TestCgroup"}
{"Action":"run","Package":"ex/a","Test":"TestPy"}
{"Action":"output","Package":"ex/a","Test":"TestPy","Output":"    a_test.go:12: python3 not found\n"}
{"Action":"skip","Package":"ex/a","Test":"TestPy"}
{"Action":"run","Package":"ex/a","Test":"TestBad"}
{"Action":"output","Package":"ex/a","Test":"TestBad","Output":"    a_test.go:20: got 1, want 2\n"}
{"Action":"output","Package":"ex/a","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}
{"Action":"fail","Package":"ex/a","Test":"TestBad"}
{"Action":"output","Package":"ex/a","Output":"FAIL\n"}
{"Action":"output","Package":"ex/a","Output":"FAIL\tex/a\t0.01s\n"}
{"Action":"fail","Package":"ex/a"}
{"Action":"output","Package":"ex/b","Output":"ok  \tex/b\t0.01s\n"}
{"Action":"pass","Package":"ex/b"}
`

func TestSummary(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	var out strings.Builder
	failed, err := run(strings.NewReader(stream), &out, "unit", state)
	if err != nil || !failed {
		t.Fatalf("run: failed=%v err=%v", failed, err)
	}
	o := out.String()
	for _, want := range []string{
		"got 1, want 2", "FAIL\tex/a", "ok  \tex/b",
		`ex/a TestCgroup (unit): requires cgroup v2 controller "memory"; /sys/fs/cgroup/unified/cgroup.controllers has "" [runs in the VM tier: make vmtest]`,
		"ex/a TestPy (unit): python3 not found\n",
		"(1 of them run in the VM tier)",
		"\ntest: 1 passed, 1 failed, 2 skipped\n",
	} {
		if !strings.Contains(o, want) {
			t.Errorf("output lacks %q:\n%s", want, o)
		}
	}
	if strings.Contains(o, "chatter") {
		t.Errorf("a passing test's log is printed:\n%s", o)
	}
	// A second run adds to the state; a passing stream exits 0.
	out.Reset()
	failed, err = run(strings.NewReader(`{"Action":"pass","Package":"ex/c","Test":"TestC"}`+"\n"), &out, "race", state)
	if err != nil || failed {
		t.Fatalf("second run: failed=%v err=%v", failed, err)
	}
	if o := out.String(); !strings.Contains(o, "race:    1 passed, 0 failed, 0 skipped") || !strings.HasSuffix(o, "test: 2 passed, 1 failed, 2 skipped\n") {
		t.Errorf("cumulative summary:\n%s", o)
	}
}

// A test that never ends (a crash, the -timeout panic) counts as failed.
func TestSummaryUnfinished(t *testing.T) {
	var out strings.Builder
	in := `{"Action":"run","Package":"p","Test":"TestHang"}
{"Action":"output","Package":"p","Test":"TestHang","Output":"panic: test timed out after 1s\n"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t1.0s\n"}
{"Action":"fail","Package":"p"}
`
	failed, err := run(strings.NewReader(in), &out, "unit", "")
	if err != nil || !failed || !strings.Contains(out.String(), "panic: test timed out") || !strings.HasSuffix(out.String(), "test: 0 passed, 1 failed, 0 skipped\n") {
		t.Errorf("failed=%v err=%v\n%s", failed, err, out.String())
	}
}
