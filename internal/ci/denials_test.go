package ci

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

var (
	readDenial = policy.Denial{Layer: policy.LayerLandlock, Access: "fs.read_file", Object: policy.DeniedObject{Path: "/srv/secret"}, Count: 2,
		Hint: &policy.Hint{Patch: []policy.Change{{Field: "tools.sh.filesystem.read", Add: "/srv/secret"}}, Text: `add "/srv/secret" to tools.sh.filesystem.read`}}
	signalDenial = policy.Denial{Layer: policy.LayerLandlock, Access: "scope.signal", Object: policy.DeniedObject{PID: 1, Comm: "init"}, Count: 1,
		Hint: &policy.Hint{ByDesign: true, Text: "not allowed by design: a launch may signal only its own processes"}}
	portDenial = policy.Denial{Layer: policy.LayerNetwork, Access: "net.egress.destination", Object: policy.DeniedObject{Name: "evil.example", Port: 443, Rule: "tools.sh.network.allow"}, Count: 3,
		Hint: &policy.Hint{Patch: []policy.Change{{Field: "tools.sh.network.allow", Add: "evil.example"}}, Text: `add "evil.example" to tools.sh.network.allow`}}
)

func TestDenialLine(t *testing.T) {
	for _, tc := range []struct {
		d    policy.Denial
		want string
	}{
		{readDenial, `landlock fs.read_file /srv/secret (2 times); to allow it: add "/srv/secret" to tools.sh.filesystem.read`},
		{signalDenial, `landlock scope.signal pid 1 (init); not allowed by design: a launch may signal only its own processes`},
		{portDenial, `network net.egress.destination evil.example:443 (3 times); to allow it: add "evil.example" to tools.sh.network.allow`},
		{policy.Denial{Layer: "landlock", Access: "net.connect_tcp", Object: policy.DeniedObject{Addr: "127.0.0.1", Port: 8080}, Count: 1}, `landlock net.connect_tcp 127.0.0.1:8080`},
		{policy.Denial{Layer: "seccomp", Access: "seccomp.bpf", Object: policy.DeniedObject{Syscall: "bpf"}, Count: 1}, `seccomp seccomp.bpf bpf`},
	} {
		if got := DenialLine(tc.d); got != tc.want {
			t.Errorf("DenialLine = %q\n          want %q", got, tc.want)
		}
	}
	e := &agentexec.EgressReport{Allowed: []agentexec.EgressConn{{Host: "a.org"}, {Host: "b.org"}}, Sent: 300, Received: 5000}
	if got, want := EgressLine(e, []policy.Denial{readDenial, portDenial}), "egress: 2 connections allowed (300B sent, 4.9KiB received), 3 refused"; got != want {
		t.Errorf("EgressLine = %q, want %q", got, want)
	}
	if EgressLine(nil, []policy.Denial{portDenial}) != "" {
		t.Error("EgressLine without a proxy session is not empty")
	}
	for _, tc := range []struct {
		st    agentexec.DenialsStatus
		asked bool
		want  string
	}{
		{agentexec.DenialsStatus{State: "complete"}, true, ""},
		{agentexec.DenialsStatus{State: "unavailable", Reason: "kernel_denials: off"}, true, ""},
		{agentexec.DenialsStatus{State: "unavailable", Reason: "audit is off on this host"}, false, ""},
		{agentexec.DenialsStatus{State: "unavailable", Reason: "audit is off on this host"}, true, "kernel denials unavailable: audit is off on this host"},
		{agentexec.DenialsStatus{State: "incomplete", Reason: "ENOBUFS"}, false, "the list of kernel denials may be incomplete: ENOBUFS"},
	} {
		if got := StatusNote(tc.st, tc.asked); got != tc.want {
			t.Errorf("StatusNote(%+v, %v) = %q, want %q", tc.st, tc.asked, got, tc.want)
		}
	}
}

// A step's denials reach the failure display, the JSON report (per step, valid
// against the schema) and the JUnit report (failure text and system-err), with
// their hints. Control: a step without denials shows none of it.
func TestDenialsInReports(t *testing.T) {
	dir := t.TempDir()
	stderrFile := filepath.Join(dir, "read.stderr")
	os.WriteFile(stderrFile, []byte("cat: /srv/secret: Permission denied\n"), 0o644)
	now := time.Now()
	egress := &agentexec.EgressReport{Allowed: []agentexec.EgressConn{{Method: "CONNECT", Host: "a.org", Port: 443, Addr: "192.0.2.1:443", Rule: "a.org", Sent: 10, Received: 20}}, Sent: 10, Received: 20}
	read := &StepResult{Step: &Step{Name: "read", Tool: "sh"}, Status: StatusFailed, Start: now, End: now, Launched: true,
		StderrFile: stderrFile,
		Result: agentexec.Result{ExitCode: 1, Denials: []policy.Denial{readDenial, portDenial},
			DenialsStatus: agentexec.DenialsStatus{State: "complete"}, Egress: egress}}
	read.Message = "exit status 1; " + denialsMessage(read.Result.Denials)
	clean := &StepResult{Step: &Step{Name: "clean", Tool: "sh"}, Status: StatusFailed, Message: "exit status 1", Start: now, End: now, Launched: true,
		Result: agentexec.Result{ExitCode: 1, DenialsStatus: agentexec.DenialsStatus{State: "unavailable", Reason: "kernel_denials: off"}}}
	denied := &StepResult{Step: &Step{Name: "denied", Tool: "curl"}, Status: StatusDenied, Start: now, End: now,
		Denied: &agentexec.DeniedError{Rule: "tools", Op: "launch", Object: `"curl"`, Reason: "no such tool in the policy",
			Hint: &policy.Hint{Patch: []policy.Change{{Field: "tools", Add: "curl"}}, Text: `add a tool "curl" to tools`}}}
	denied.Message = denied.Denied.Error()

	if want := "exit status 1; the sandbox refused landlock fs.read_file /srv/secret and 1 more"; read.Message != want {
		t.Errorf("message %q, want %q", read.Message, want)
	}

	// The failure display.
	var b syncBuf
	d := &plainDisplay{w: &b}
	for _, r := range []*StepResult{read, clean, denied} {
		d.finished(r)
	}
	out := b.String()
	for _, want := range []string{
		`[read] failed: exit status 1; the sandbox refused landlock fs.read_file /srv/secret and 1 more`,
		`[read] denied: landlock fs.read_file /srv/secret (2 times); to allow it: add "/srv/secret" to tools.sh.filesystem.read` + "\n",
		`[read] denied: network net.egress.destination evil.example:443 (3 times); to allow it: add "evil.example" to tools.sh.network.allow` + "\n",
		`[read] egress: 1 connection allowed (10B sent, 20B received), 3 refused` + "\n",
		`[denied] policy: to allow it: add a tool "curl" to tools` + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("display lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "[clean] denied") || strings.Contains(out, "[clean] egress") || strings.Count(out, "[clean]") != 1 {
		t.Errorf("a step without denials shows some:\n%s", out)
	}
	var tb syncBuf
	tty := newTTYDisplay(&tb, 60, 1, false)
	tty.finished(read)
	tty.close()
	if !strings.Contains(tb.String(), `    ! denied: landlock fs.read_file /srv/secret (2 times); to allow it: add "/srv/secret" to tools.sh.filesystem.read`) {
		t.Errorf("TTY display lacks the denial:\n%q", tb.String())
	}

	// The JSON report, against its schema.
	rep := buildReport(&Job{Name: "j", File: "j.yaml"}, "p.yaml", "/ws", ReportOptions{Jobs: 1, Artifacts: dir}, now, now,
		[]*StepResult{read, clean, denied}, 1)
	raw, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	validateReportSchema(t, raw)
	var back Report
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	rs := back.Steps[0]
	if len(rs.Denials) != 2 || rs.Denials[0].Object.Path != "/srv/secret" || rs.Denials[0].Count != 2 || rs.Denials[0].Hint == nil ||
		rs.DenialsStatus == nil || rs.DenialsStatus.State != "complete" || rs.Egress == nil || len(rs.Egress.Allowed) != 1 {
		t.Errorf("report step read: denials %+v status %+v egress %+v", rs.Denials, rs.DenialsStatus, rs.Egress)
	}
	if cs := back.Steps[1]; len(cs.Denials) != 0 || cs.DenialsStatus == nil || cs.DenialsStatus.State != "unavailable" || cs.Egress != nil {
		t.Errorf("report step clean: %+v %+v %+v", cs.Denials, cs.DenialsStatus, cs.Egress)
	}
	if ds := back.Steps[2]; ds.Denied == nil || ds.Denied.Hint == nil || ds.Denied.Hint.Text != `add a tool "curl" to tools` || ds.DenialsStatus != nil {
		t.Errorf("report step denied: %+v", ds.Denied)
	}
	if !strings.Contains(string(raw), `"patch":[{"field":"tools.sh.filesystem.read","add":"/srv/secret"}]`) {
		t.Errorf("report lacks the patch: %s", raw)
	}

	// The JUnit report.
	junit := filepath.Join(dir, "junit.xml")
	if err := writeJUnit(junit, rep); err != nil {
		t.Fatal(err)
	}
	xb, _ := os.ReadFile(junit)
	var doc struct {
		Suites []struct {
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
				Error *struct {
					Text string `xml:",chardata"`
				} `xml:"error"`
				Err string `xml:"system-err"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(xb, &doc); err != nil {
		t.Fatal(err)
	}
	cases := doc.Suites[0].Cases
	rc := cases[0]
	wantText := `denied: landlock fs.read_file /srv/secret (2 times); to allow it: add "/srv/secret" to tools.sh.filesystem.read` + "\n" +
		`denied: network net.egress.destination evil.example:443 (3 times); to allow it: add "evil.example" to tools.sh.network.allow` + "\n" +
		"egress: 1 connection allowed (10B sent, 20B received), 3 refused\n" +
		"cat: /srv/secret: Permission denied\n"
	if rc.Failure == nil || rc.Failure.Text != wantText || !strings.Contains(rc.Failure.Message, "the sandbox refused") {
		t.Errorf("JUnit failure of read: %+v\nwant text:\n%s", rc.Failure, wantText)
	}
	if !strings.HasPrefix(rc.Err, "cat: /srv/secret: Permission denied\n[agentexec] denied: landlock fs.read_file /srv/secret") {
		t.Errorf("JUnit system-err of read: %q", rc.Err)
	}
	if cc := cases[1]; cc.Failure == nil || strings.Contains(cc.Failure.Text, "denied") || strings.Contains(cc.Err, "[agentexec]") {
		t.Errorf("JUnit case clean shows denials: %+v %q", cc.Failure, cc.Err)
	}
	if dc := cases[2]; dc.Error == nil || dc.Error.Text != fmt.Sprintf("rule tools: launch %q: no such tool in the policy\nto allow it: add a tool \"curl\" to tools\n", "curl") {
		t.Errorf("JUnit error of denied: %+v", dc.Error)
	}
}

// `agentexec ci` with kernel denials: a step that reads a file outside the
// policy's roots fails, and its failure names the refused file and the policy
// change that would allow it, in the display, the JSON report and JUnit (issue
// 16). Controls: without kernel_denials the same step fails with nothing but the
// tool's "Permission denied"; --kernel-denials turns them on for that policy.
func TestE2EKernelDenials(t *testing.T) {
	requireSandbox(t)
	testutil.RequireLandlockABI(t, policy.LandlockABIAuditFlags)
	sdir, err := os.MkdirTemp("/tmp", "agentexec-ci-denial-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sdir)
	os.Chmod(sdir, 0o755)
	secret := filepath.Join(sdir, "secret")
	if err := os.WriteFile(secret, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	steps := fmt.Sprintf("  - name: read-outside\n    sh: cat %s\n", secret)

	off := writeJob(t, "kd", steps)
	on := writeJob(t, "kd", steps)
	b, _ := os.ReadFile(on.file)
	if err := os.WriteFile(on.file, []byte(strings.Replace(string(b), "  version: 1\n", "  version: 1\n  kernel_denials: on\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	check := func(name string, r *ciRun) {
		t.Helper()
		s := r.step(t, "read-outside")
		if s.DenialsStatus != nil && s.DenialsStatus.State == "unavailable" {
			if testutil.Strict() {
				t.Fatalf("AGENTEXEC_STRICT=1: kernel denials unavailable: %s", s.DenialsStatus.Reason)
			}
			t.Skipf("kernel denials unavailable on this host: %s", s.DenialsStatus.Reason)
		}
		if s.Status != StatusFailed || len(s.Denials) != 1 || s.Denials[0].Access != "fs.read_file" || s.Denials[0].Object.Path != secret ||
			s.Denials[0].Hint == nil || len(s.Denials[0].Hint.Patch) != 1 || s.Denials[0].Hint.Patch[0].Field != "tools.sh.filesystem.read" {
			t.Errorf("%s: step %s (%s), denials %+v", name, s.Status, s.Message, s.Denials)
		}
		line := fmt.Sprintf(`denied: landlock fs.read_file %s; to allow it: add %q to tools.sh.filesystem.read`, secret, secret)
		if !strings.Contains(r.stdout, "[read-outside] "+line+"\n") {
			t.Errorf("%s: the display lacks %q", name, line)
		}
		if !strings.Contains(s.Message, "the sandbox refused landlock fs.read_file "+secret) {
			t.Errorf("%s: message %q", name, s.Message)
		}
		if !strings.Contains(html.UnescapeString(string(r.junit)), line) {
			t.Errorf("%s: JUnit lacks %q:\n%s", name, line, r.junit)
		}
	}
	check("kernel_denials: on", runCI(t, on))
	check("--kernel-denials", runCI(t, off, "--kernel-denials"))

	r := runCI(t, off)
	s := r.step(t, "read-outside")
	if s.Status != StatusFailed || len(s.Denials) != 0 || s.DenialsStatus == nil || s.DenialsStatus.Reason != "kernel_denials: off" ||
		strings.Contains(r.stdout, "denied: landlock") || strings.Contains(string(r.junit), "denied: landlock") {
		t.Errorf("without kernel denials: step %s, denials %+v, status %+v", s.Status, s.Denials, s.DenialsStatus)
	}
	if b, _ := os.ReadFile(filepath.Join(r.artifacts, "kd", "read-outside.stderr")); !strings.Contains(string(b), "Permission denied") {
		t.Errorf("control: the read was not refused: %q", b)
	}
}
