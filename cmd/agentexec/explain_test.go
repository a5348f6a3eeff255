package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// explainResult is a result as run --json prints it, with a denial of each kind
// of hint: a patch, a port, one by design; and a count.
func explainResult() agentexec.ResultJSON {
	code := 1
	st := agentexec.DenialsStatus{State: "complete"}
	return agentexec.ResultJSON{Type: "result", ID: "run", Status: agentexec.StatusOK, Tool: "cat", ExitCode: &code,
		DenialsStatus: &st, Unenforced: []string{},
		Denials: []policy.Denial{
			{Layer: policy.LayerLandlock, Access: "fs.read_file", Object: policy.DeniedObject{Path: "/srv/data/a&b.txt"}, Count: 2,
				Hint: &policy.Hint{Patch: []policy.Change{{Field: "tools.cat.filesystem.read", Add: "/srv/data/a&b.txt"}},
					Text: `add "/srv/data/a&b.txt" to tools.cat.filesystem.read`}},
			{Layer: policy.LayerLandlock, Access: "net.connect_tcp", Object: policy.DeniedObject{Addr: "127.0.0.1", Port: 8080}, Count: 1,
				Hint: &policy.Hint{Patch: []policy.Change{{Field: "tools.cat.network.connect_tcp", Add: 8080}},
					Text: "add 8080 to tools.cat.network.connect_tcp"}},
			{Layer: policy.LayerLandlock, Access: "scope.signal", Object: policy.DeniedObject{PID: 4242, Comm: "agent"}, Count: 1,
				Hint: &policy.Hint{ByDesign: true, Text: "not allowed by design: a launch may signal only its own processes"}},
		}}
}

func explainString(t *testing.T, in string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := explain(&out, strings.NewReader(in), "results.json")
	return out.String(), err
}

// One result, pretty-printed as a person might save it: a heading, then one
// numbered block per denial with what was refused, the count, and what would
// allow it (the hint's text and the lines for the policy file), or why nothing
// should.
func TestExplainOneResult(t *testing.T) {
	b, err := json.MarshalIndent(explainResult(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out, err := explainString(t, string(b))
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	t.Logf("\n%s", out)
	for _, want := range []string{
		`result "run" (tool cat): ran, exit 1` + "\n3 denials; kernel denials complete\n",
		"\n1. landlock fs.read_file /srv/data/a&b.txt\n   what:  the kernel (Landlock) refused reading this file\n   count: 2 times\n" +
			`   allow: add "/srv/data/a&b.txt" to tools.cat.filesystem.read` + "\n",
		"     tools:\n       cat:\n         filesystem:\n           read+: [\"/srv/data/a&b.txt\"]\n",
		"\n2. landlock net.connect_tcp 127.0.0.1:8080\n   what:  the kernel (Landlock) refused connecting to this TCP port\n",
		"         network:\n           connect_tcp+: [8080]\n",
		"\n3. landlock scope.signal pid 4242 (agent)\n",
		"   allow: no policy change should: a launch may signal only its own processes\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q", want)
		}
	}
	if strings.Count(out, "   allow: ") != 3 || strings.Count(out, "   what:  ") != 3 {
		t.Errorf("want one block per denial (3), got:\n%s", out)
	}
}

// The lines explain prints for a patch are valid policy YAML: put under a
// policy's tool they make the hint's change (the path is readable, the port
// connectable), the defaults kept. The control: the same policy without them
// has neither.
func TestExplainPatchLinesApply(t *testing.T) {
	r := explainResult()
	var patch []policy.Change
	for _, d := range r.Denials[:2] {
		patch = append(patch, d.Hint.Patch...)
	}
	var snippet map[string]any
	if err := yaml.Unmarshal([]byte(patchYAML(patch)), &snippet); err != nil {
		t.Fatalf("patch lines are not YAML: %v\n%s", err, patchYAML(patch))
	}
	ws := t.TempDir()
	parse := func(tools map[string]any) *policy.Tool {
		t.Helper()
		tree := map[string]any{"version": 1, "workspace": ws,
			"defaults": map[string]any{"filesystem": map[string]any{"read": []any{"/usr", "${WORKSPACE}"}, "exec": []any{"/usr"}},
				"network": map[string]any{"connect_tcp": []any{443}}},
			"tools": tools}
		b, err := yaml.Marshal(tree)
		if err != nil {
			t.Fatal(err)
		}
		p, err := policy.Parse("p.yaml", b, policy.Options{Workspace: ws, Home: ws, CPUs: runtime.NumCPU()})
		if err != nil {
			t.Fatalf("policy with the patch lines: %v\n%s", err, b)
		}
		tool, ok := p.Tool("cat")
		if !ok {
			t.Fatal("no tool cat")
		}
		return tool
	}
	has := func(tool *policy.Tool) (bool, bool) {
		return slices.Contains(tool.Profile.FS.Read, "/srv/data/a&b.txt"), slices.Contains(tool.Profile.Network.ConnectTCP, 8080)
	}
	if read, port := has(parse(map[string]any{"cat": map[string]any{}})); read || port {
		t.Fatalf("control: the base policy already grants read %v, port %v", read, port)
	}
	cat := parse(snippet["tools"].(map[string]any))
	if read, port := has(cat); !read || !port {
		t.Errorf("with the patch lines: read %v, port %v; want both (read %v, ports %v)", read, port, cat.Profile.FS.Read, cat.Profile.Network.ConnectTCP)
	}
	if !slices.Contains(cat.Profile.FS.Read, "/usr") || !slices.Contains(cat.Profile.Network.ConnectTCP, 443) {
		t.Errorf("the patch lines replaced the defaults: read %v, ports %v", cat.Profile.FS.Read, cat.Profile.Network.ConnectTCP)
	}
}

// serve's output is JSON lines: stdout chunks and other messages are skipped,
// each result gets its heading; a result the policy refused shows the rule and
// its hint; a result of an agentexec before kernel denials says so.
func TestExplainStream(t *testing.T) {
	one, _ := json.Marshal(explainResult())
	code := 0
	st := agentexec.DenialsStatus{State: "unavailable", Reason: "kernel_denials: off"}
	quiet, _ := json.Marshal(agentexec.ResultJSON{Type: "result", ID: "2", Status: agentexec.StatusOK, Tool: "rg", ExitCode: &code, DenialsStatus: &st})
	denied, _ := json.Marshal(agentexec.NewResultJSON("3", agentexec.Result{Tool: "git"}, &agentexec.DeniedError{
		Rule: "tools.git.args.allow", Op: "argv", Object: `"push"`, Reason: "no allow pattern matches",
		Hint: &policy.Hint{Patch: []policy.Change{{Field: "tools.git.args.allow", Add: "push"}}, Text: `add "push" to tools.git.args.allow`}}))
	old := `{"type":"result","id":"4","status":"ok","tool":"ls","exit_code":0,"stdout":"","stderr":""}`
	in := strings.Join([]string{
		`{"type":"stdout","id":"1","data":"x\n"}`, string(one), `{"type":"pong","version":"0.1.0-dev"}`,
		string(quiet), string(denied), "", old, `{"type":"error","line":7,"error":"unknown field"}`,
	}, "\n") + "\n"
	out, err := explainString(t, in)
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	t.Logf("\n%s", out)
	for _, want := range []string{
		`result "run" (tool cat): ran, exit 1`,
		"result \"2\" (tool rg): ran, exit 0\nno denials; kernel denials unavailable (kernel_denials: off): only the policy's and the egress proxy's refusals are listed\n",
		"result \"3\" (tool git): refused by the policy before launch\n1 denial; the tool did not run\n\n" +
			"1. policy argv \"push\"\n   what:  agentexec's policy refused the request before launch: no allow pattern matches (rule tools.git.args.allow)\n" +
			"   allow: add \"push\" to tools.git.args.allow\n",
		"       git:\n         args:\n           allow+: [\"push\"]\n",
		"result \"4\" (tool ls): ran, exit 0\nno denials; kernel denials not reported (a result of an agentexec without them)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q", want)
		}
	}
	if n := strings.Count(out, "\nresult ") + 1; n != 4 {
		t.Errorf("%d results explained, want 4", n)
	}
}

// Input that is not results is an error naming the input, the value and its
// line; nothing is explained from a value past the error.
func TestExplainBadInput(t *testing.T) {
	good := `{"type":"result","id":"1","status":"ok","tool":"ls","exit_code":0,"stdout":"","stderr":""}`
	tests := []struct {
		name, in, want string
	}{
		{"empty", "  \n", "results.json: empty"},
		{"not JSON", good + "\n\n{\"type\": result}\n", "results.json: line 3: not JSON"},
		{"an array", good + "\n[" + good + "]\n", "results.json: value 2 (line 2): not a JSON object (a result is one): an array"},
		{"no type", good + "\n" + `{"id":"2","status":"ok"}`, `results.json: value 2 (line 2): not an agentexec result: it has no "type" field`},
		{"bad field", `{"type":"result","denials":"none"}`, "results.json: value 1 (line 1): not a valid result: json: cannot unmarshal string"},
		{"no result", `{"type":"pong"}` + "\n" + `{"type":"stdout","id":"1","data":""}`, "results.json: no result among its 2 JSON values"},
		{"cut short", good[:40], "results.json: value 1 (line 1): unexpected EOF"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := explainString(t, tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// End to end on this host: `agentexec run --json` of a read outside the roots
// under kernel_denials: on, piped into `agentexec explain -` (and given as a
// file), explains the kernel's denial with the policy change; the control is the
// same read of an allowed file, explained as no denial of it.
func TestExplainRunOutput(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, policy.LandlockABIAuditFlags)
	if c, err := sys.OpenAudit(0, 0); errors.Is(err, unix.EPROTONOSUPPORT) {
		t.Skipf("requires a kernel with CONFIG_AUDIT: %v", err)
	} else if err == nil {
		c.Close()
	}
	dir, err := os.MkdirTemp("/tmp", "agentexec-explain-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	ws := t.TempDir()
	allowed := filepath.Join(ws, "allowed")
	for _, f := range []string{secret, allowed} {
		if err := os.WriteFile(f, []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte(`version: 1
kernel_denials: on
defaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc/ld.so.cache, /dev/null, "${WORKSPACE}"]
    write: [/dev/null]
    exec: [/usr, /bin, /lib, /lib64]
  limits: {timeout: 30s}
tools:
  cat: {}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := testutil.AgentexecBinary(t)
	runJSON := func(file string) []byte {
		cmd := exec.Command(bin, "run", "--json", "--policy", pol, "--", "cat", file)
		cmd.Dir = ws
		out, err := cmd.Output()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return out
	}
	explainCmd := func(stdin []byte, args ...string) string {
		cmd := exec.Command(bin, append([]string{"explain"}, args...)...)
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("explain %v: %v: %s", args, err, stderr.String())
		}
		return string(out)
	}
	res := runJSON(secret)
	var r agentexec.ResultJSON
	if err := json.Unmarshal(res, &r); err != nil {
		t.Fatalf("run --json: %v\n%s", err, res)
	}
	if r.DenialsStatus == nil || r.DenialsStatus.State != "complete" {
		t.Fatalf("run --json: denials_status %+v (denials %+v)", r.DenialsStatus, r.Denials)
	}
	out := explainCmd(res, "-")
	t.Logf("\n%s", out)
	for _, want := range []string{
		fmt.Sprintf("1. landlock fs.read_file %s\n   what:  the kernel (Landlock) refused reading this file\n", secret),
		fmt.Sprintf("   allow: add %q to tools.cat.filesystem.read\n", secret),
		fmt.Sprintf("           read+: [%q]\n", secret),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain - lacks %q", want)
		}
	}
	file := filepath.Join(t.TempDir(), "result.json")
	if err := os.WriteFile(file, res, 0o644); err != nil {
		t.Fatal(err)
	}
	if byFile := explainCmd(nil, file); byFile != out {
		t.Errorf("explain FILE differs from explain -:\n%s", byFile)
	}

	out = explainCmd(runJSON(allowed), "-")
	if !strings.Contains(out, "(tool cat): ran, exit 0\n") || strings.Contains(out, allowed) || strings.Contains(out, secret) {
		t.Errorf("control: the allowed read explained as\n%s", out)
	}
}
