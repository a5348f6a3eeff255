package mcp

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentexec/agentexec/internal/testutil"
)

// hotTools are the 20 hot tools of the start-up benchmark's policy.
var hotTools = []string{"cat", "head", "tail", "ls", "grep", "sed", "find", "stat", "wc", "sort",
	"uniq", "tr", "cut", "echo", "date", "basename", "dirname", "true", "env", "git"}

// BenchmarkStartup measures `agentexec mcp` start-up over stdio with a policy of
// 20 hot tools, as a desktop agent sees it: from exec to the first answered
// initialize (ns/op of the initialize sub-benchmark, also reported as init_ms),
// and to the first answered tools/call (ready_ms: the runtime, started in the
// background, has its spawners and templates up). The baseline, in the same run,
// is exec of the same binary to its exit (`agentexec version`). docs/mcp.md has
// the command and the figures.
func BenchmarkStartup(b *testing.B) {
	testutil.RequireRoot(b)
	testutil.RequireLandlockABI(b, 1)
	bin := testutil.AgentexecBinary(b)
	ws := b.TempDir()
	var pol strings.Builder
	fmt.Fprintf(&pol, "version: 1\nworkspace: %s\npath: [/usr/bin, /bin]\ndefaults:\n  filesystem:\n    read: [/usr, /lib, /lib64, /bin, /etc, /dev/null, \"${WORKSPACE}\"]\n    write: [/dev/null]\n    exec: [/usr, /bin, /lib, /lib64]\n  limits: {timeout: 30s}\n  enforcement: {landlock: require, cgroup: best_effort}\ntools:\n", ws)
	for _, t := range hotTools {
		if _, err := exec.LookPath(t); err != nil {
			testutil.SkipMissingCommand(b, t, "requires %s: %v", t, err)
		}
		fmt.Fprintf(&pol, "  %s: {hot: true}\n", t)
	}
	file := filepath.Join(ws, "policy.yaml")
	if err := os.WriteFile(file, []byte(pol.String()), 0o644); err != nil {
		b.Fatal(err)
	}

	b.Run("version", func(b *testing.B) {
		for b.Loop() {
			if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil {
				b.Fatalf("version: %v %s", err, out)
			}
		}
	})
	b.Run("initialize", func(b *testing.B) {
		var initTotal, readyTotal time.Duration
		n := 0
		for b.Loop() {
			t0 := time.Now()
			cmd := exec.Command(bin, "mcp", "--policy", file, "--log-level", "error")
			in, err := cmd.StdinPipe()
			if err != nil {
				b.Fatal(err)
			}
			outPipe, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			out := bufio.NewReader(outPipe)
			io.WriteString(in, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`+"\n")
			line, err := out.ReadString('\n')
			if err != nil || !strings.Contains(line, `"id":1,"result"`) {
				b.Fatalf("initialize: %q %v\n%s", line, err, stderr.String())
			}
			initTotal += time.Since(t0)
			b.StopTimer()
			io.WriteString(in, `{"jsonrpc":"2.0","method":"notifications/initialized"}`+"\n"+
				`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"true","arguments":{"args":[]}}}`+"\n")
			line, err = out.ReadString('\n')
			if err != nil || !strings.Contains(line, `"exit_code":0`) {
				b.Fatalf("tools/call: %q %v\n%s", line, err, stderr.String())
			}
			readyTotal += time.Since(t0)
			n++
			in.Close()
			if err := cmd.Wait(); err != nil {
				b.Fatalf("exit: %v\n%s", err, stderr.String())
			}
			b.StartTimer()
		}
		b.ReportMetric(float64(initTotal.Microseconds())/float64(n)/1000, "init_ms")
		b.ReportMetric(float64(readyTotal.Microseconds())/float64(n)/1000, "ready_ms")
	})
}
