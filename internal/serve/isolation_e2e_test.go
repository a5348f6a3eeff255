package serve_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentexec/agentexec/internal/testutil"
)

// Through serve, with more requests in flight than the spawner has launcher threads:
// attacker tools aimed at victim tools of the same profile (secrets in their
// environment and stdin) get nothing — no signal, no environ or maps, no open of
// their memory, stdin or stdout — and the victims' results are untouched.
func TestE2ESiblingLaunchesAreIsolated(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 6)
	const k = 3
	bin := testutil.AgentexecBinary(t)
	ws := t.TempDir()
	out := filepath.Join(ws, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(ws, "policy.yaml")
	if err := os.WriteFile(pol, []byte(fmt.Sprintf(`version: 1
workspace: %s
defaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/null, "${WORKSPACE}"]
    write: ["${WORKSPACE}/out", /dev/null]
    exec: [/usr, /bin, /lib, /lib64]
  env:
    allow: [FOO]
    set: {PATH: /usr/bin:/bin}
  limits: {timeout: 60s}
  concurrency: 16
  enforcement: {landlock: require, cgroup: best_effort}
tools:
  sh: {exec: /bin/sh, hot: true}
`, ws)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--policy", pol)
	cmd.Dir = ws
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		in.Close()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("serve stderr:\n%s", stderr.String())
		}
	}()
	send := func(v map[string]any) {
		b, _ := json.Marshal(v)
		if _, err := in.Write(append(b, '\n')); err != nil {
			t.Fatal(err)
		}
	}
	victim := `echo $$ > out/pid-$1; while [ ! -e out/go ]; do sleep 0.02; done; echo "stdin=$(cat)"; echo victim-ok`
	for i := range k {
		send(map[string]any{"id": fmt.Sprintf("v%d", i), "tool": "sh", "args": []string{"-c", victim, "sh", fmt.Sprint(i)},
			"env": map[string]string{"FOO": fmt.Sprintf("env-secret-%d", i)}, "stdin": fmt.Sprintf("stdin-secret-%d", i)})
	}
	var pids []string
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < k; {
		b, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("pid-%d", i)))
		if err == nil && strings.HasSuffix(string(b), "\n") {
			pids = append(pids, strings.TrimSpace(string(b)))
			i++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("victim %d never started", i)
		}
		time.Sleep(10 * time.Millisecond)
	}
	attack := `for p in "$@"; do
  kill -9 "$p" 2>/dev/null && echo "$p signal ok"
  cat /proc/$p/environ >/dev/null 2>&1 && echo "$p environ ok"
  cat /proc/$p/maps >/dev/null 2>&1 && echo "$p maps ok"
  (exec 3<>/proc/$p/mem) 2>/dev/null && echo "$p mem ok"
  (exec 3</proc/$p/fd/0) 2>/dev/null && echo "$p fd0 ok"
  (echo FORGED >/proc/$p/fd/1) 2>/dev/null && echo "$p fd1 ok"
done
echo attacker-done`
	for i := range k {
		send(map[string]any{"id": fmt.Sprintf("a%d", i), "tool": "sh", "args": append([]string{"-c", attack, "sh"}, pids...)})
	}
	r := bufio.NewReader(stdout)
	results := map[string]map[string]any{}
	readResult := func() {
		line, err := r.ReadBytes('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		results[m["id"].(string)] = m
	}
	for range k {
		readResult() // the attackers finish first: the victims wait for out/go
	}
	if err := os.WriteFile(filepath.Join(out, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for range k {
		readResult()
	}
	for i := range k {
		a := results[fmt.Sprintf("a%d", i)]
		if a == nil || a["stdout"] != "attacker-done\n" {
			t.Errorf("attacker %d: %v (any line before attacker-done is an attack that succeeded)", i, a)
		}
		v := results[fmt.Sprintf("v%d", i)]
		want := fmt.Sprintf("stdin=stdin-secret-%d\nvictim-ok\n", i)
		if v == nil || v["status"] != "ok" || v["stdout"] != want {
			t.Errorf("victim %d: %v, want status ok and stdout %q", i, v, want)
		}
	}
}
