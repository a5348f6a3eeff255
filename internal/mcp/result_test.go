package mcp

import (
	"encoding/json"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/policy"
)

func TestRender(t *testing.T) {
	ci := callInfo{mcpName: "rg", tool: "rg", cap: 1024, timeout: 5 * time.Second}
	denied := &agentexec.DeniedError{Rule: "tools.git.args.deny[0]", Op: "argv", Object: `"push"`, Reason: `matches "push" at argument 1`}
	for _, tc := range []struct {
		name    string
		res     agentexec.Result
		err     error
		isError bool
		status  string
		text    []string // substrings of the text, in order
	}{
		{"exit 0", agentexec.Result{Tool: "rg", Stdout: []byte("a:1:x\n"), Wall: 3 * time.Millisecond}, nil, false, "ok",
			[]string{"exit code 0 (rg", "--- stdout ---\na:1:x\n", "--- stderr: empty ---"}},
		{"no match is not an error", agentexec.Result{Tool: "rg", ExitCode: 1}, nil, false, "ok",
			[]string{"exit code 1 (rg", "--- stdout: empty ---"}},
		{"denied", agentexec.Result{Tool: "git"}, denied, true, "denied",
			[]string{"denied by the policy", "rule tools.git.args.deny[0] refused argv \"push\"", "to allow it: the policy forbids these arguments"}},
		{"launch error", agentexec.Result{Tool: "rg"}, &agentexec.LaunchError{Tool: "rg", Op: "resolve", Err: errors.New("executable not found on this host")}, true, "error",
			[]string{"launch failed, nothing was run: launch rg: resolve: executable not found"}},
		{"exec error", agentexec.Result{Tool: "rg", ExitCode: 127, ExecError: "no such file"}, nil, true, "ok",
			[]string{"exit code 127: rg could not be executed: no such file"}},
		{"timeout", agentexec.Result{Tool: "rg", ExitCode: -1, Signal: syscall.SIGKILL, TimedOut: true, Stdout: []byte("partial")}, nil, true, "timeout",
			[]string{"timed out: rg was killed (its whole process tree) after the 5s limit", "--- stdout ---\npartial\n"}},
		{"truncated", agentexec.Result{Tool: "rg", Stdout: []byte("xx"), StdoutTruncated: true, StdoutDropped: 4000}, nil, false, "ok",
			[]string{"exit code 0", "--- stdout (truncated at the policy's output cap of 1 KiB: 4000 more bytes were dropped) ---\nxx\n"}},
		{"binary", agentexec.Result{Tool: "rg", Stdout: []byte{0xff, 0xfe}}, nil, false, "ok",
			[]string{"--- stdout (not UTF-8, shown as base64) ---\n//4=\n"}},
		{"oom", agentexec.Result{Tool: "rg", ExitCode: -1, Signal: syscall.SIGKILL, OOMKilled: true}, nil, true, "killed",
			[]string{"killed by SIGKILL (out of memory"}},
		{"canceled before launch", agentexec.Result{Tool: "rg"}, errCanceled, true, "killed", []string{"launch failed, nothing was run: canceled"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, text, isErr := render(ci, tc.res, tc.err)
			if isErr != tc.isError || out.Status != tc.status {
				t.Errorf("isError %v status %q, want %v %q\n%s", isErr, out.Status, tc.isError, tc.status, text)
			}
			rest := text
			for _, s := range tc.text {
				i := strings.Index(rest, s)
				if i < 0 {
					t.Fatalf("text lacks %q (in order):\n%s", s, text)
				}
				rest = rest[i+len(s):]
			}
			b, err := json.Marshal(out)
			if err != nil {
				t.Fatal(err)
			}
			// The exit code comes first in the structured content, when there is one.
			if tc.res.Signal == 0 && tc.err == nil && !strings.HasPrefix(string(b), `{"exit_code":`) {
				t.Errorf("structured content does not begin with the exit code: %s", b)
			}
			if tc.err != nil && strings.Contains(string(b), `"exit_code"`) {
				t.Errorf("a launch that did not run has an exit code: %s", b)
			}
		})
	}
}

func TestRenderDenialHints(t *testing.T) {
	for _, d := range []agentexec.DeniedError{
		{Rule: "tools", Op: "launch", Object: `"curl"`, Reason: "no such tool in the policy"},
		{Rule: "tools.git.args.allow", Op: "argv", Object: `"push"`, Reason: "no allow pattern matches"},
		{Rule: "tools.rg.filesystem", Op: "dir", Object: "/root", Reason: "outside every read, write and exec root"},
	} {
		out, text, isErr := render(callInfo{tool: "x"}, agentexec.Result{}, &d)
		if !isErr || len(out.Denials) != 1 || out.Denials[0].Hint == "" || out.Denials[0].Source != "policy" || out.Denials[0].Rule != d.Rule {
			t.Errorf("%s: isError %v denials %+v", d.Rule, isErr, out.Denials)
		}
		if !strings.Contains(text, "to allow it: ") || !strings.Contains(text, d.Rule) {
			t.Errorf("%s: text %q", d.Rule, text)
		}
	}
}

// A launch that ran carries the sandbox's denials (Result.Denials): kernel ones
// with source "kernel" and their layer, the egress proxy's with source "network";
// each with its hint, and the status. They do not make the result an error (the
// tool's exit is its answer) but the text names them before the output. Control:
// the same result without denials says nothing of the sandbox.
func TestRenderSandboxDenials(t *testing.T) {
	res := agentexec.Result{Tool: "cat", ExitCode: 1, Stderr: []byte("cat: /etc/shadow: Permission denied\n"),
		Denials: []policy.Denial{
			{Layer: policy.LayerLandlock, Access: "fs.read_file", Object: policy.DeniedObject{Path: "/etc/shadow"}, Count: 2,
				Hint: &policy.Hint{Patch: []policy.Change{{Field: "tools.cat.filesystem.read", Add: "/etc/shadow"}}, Text: `add "/etc/shadow" to tools.cat.filesystem.read`}},
			{Layer: policy.LayerLandlock, Access: "scope.signal", Object: policy.DeniedObject{PID: 42, Comm: "agent"}, Count: 1,
				Hint: &policy.Hint{ByDesign: true, Text: "not allowed by design: a launch may signal only its own processes"}},
			{Layer: policy.LayerNetwork, Access: "net.egress.destination", Object: policy.DeniedObject{Name: "evil.example", Port: 443, Rule: "tools.cat.network.allow"}, Count: 1,
				Hint: &policy.Hint{Patch: []policy.Change{{Field: "tools.cat.network.allow", Add: "evil.example"}}, Text: `add "evil.example" to tools.cat.network.allow`}},
		},
		DenialsStatus: agentexec.DenialsStatus{State: "incomplete", Reason: "netlink ENOBUFS"},
	}
	out, text, isErr := render(callInfo{tool: "cat"}, res, nil)
	if isErr || out.Status != "ok" || out.ExitCode == nil || *out.ExitCode != 1 {
		t.Errorf("isError %v status %q exit %v", isErr, out.Status, out.ExitCode)
	}
	if len(out.Denials) != 3 {
		t.Fatalf("denials %+v", out.Denials)
	}
	if d := out.Denials[0]; d.Source != "kernel" || d.Layer != "landlock" || d.Op != "fs.read_file" || d.Object != "/etc/shadow" ||
		d.Count != 2 || d.Rule != "tools.cat.filesystem.read" || len(d.Patch) != 1 || d.ByDesign || !strings.Contains(d.Hint, "add \"/etc/shadow\"") {
		t.Errorf("landlock denial %+v", d)
	}
	if d := out.Denials[1]; d.Object != "pid 42 (agent)" || !d.ByDesign || d.Rule != "" {
		t.Errorf("signal denial %+v", d)
	}
	if d := out.Denials[2]; d.Source != "network" || d.Layer != "network" || d.Object != "evil.example:443" || d.Rule != "tools.cat.network.allow" {
		t.Errorf("network denial %+v", d)
	}
	if out.DenialsStatus == nil || out.DenialsStatus.State != "incomplete" {
		t.Errorf("denials_status %+v", out.DenialsStatus)
	}
	for _, want := range []string{
		"exit code 1 (cat",
		"the sandbox refused the tool 3 kind(s) of access while it ran:",
		"- landlock fs.read_file /etc/shadow (2 times)\n  to allow it: add \"/etc/shadow\" to tools.cat.filesystem.read",
		"- landlock scope.signal pid 42 (agent)\n  not allowed by design",
		"- network net.egress.destination evil.example:443\n  to allow it: add \"evil.example\"",
		"may be incomplete: netlink ENOBUFS",
		"--- stderr ---\ncat: /etc/shadow: Permission denied",
	} {
		i := strings.Index(text, want)
		if i < 0 {
			t.Fatalf("text lacks %q (in order):\n%s", want, text)
		}
		text = text[i+len(want):]
	}
	b, _ := json.Marshal(out)
	if !strings.Contains(string(b), `"denials_status":{"state":"incomplete","reason":"netlink ENOBUFS"}`) ||
		!strings.Contains(string(b), `"patch":[{"field":"tools.cat.filesystem.read","add":"/etc/shadow"}]`) {
		t.Errorf("structured content: %s", b)
	}

	res.Denials, res.DenialsStatus = nil, agentexec.DenialsStatus{State: "unavailable", Reason: "kernel_denials: off"}
	out, text, _ = render(callInfo{tool: "cat"}, res, nil)
	if len(out.Denials) != 0 || strings.Contains(text, "sandbox") || out.DenialsStatus == nil || out.DenialsStatus.State != "unavailable" {
		t.Errorf("without denials: %+v\n%s", out.Denials, text)
	}
}
