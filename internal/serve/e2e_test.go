package serve

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentexec/agentexec/internal/testutil"
)

// proc is `agentexec serve` running on pipes.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *syncBuffer
}

// syncBuffer is the server's stderr, readable while the server writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitStderr waits until the server's stderr contains s.
func (p *proc) waitStderr(s string) {
	p.t.Helper()
	for range 500 {
		if strings.Contains(p.stderr.String(), s) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("stderr has no %q:\n%s", s, p.stderr)
}

func startServe(t testing.TB, args ...string) *proc {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 1)
	bin := testutil.AgentexecBinary(t)
	ws := t.TempDir()
	if err := os.Mkdir(filepath.Join(ws, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(ws, "policy.yaml")
	if err := os.WriteFile(pol, []byte(policyYAML(ws)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"serve", "--policy", pol}, args...)...)
	cmd.Dir = ws
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, in: in, out: bufio.NewReaderSize(out, 1<<20), stderr: &syncBuffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			in.Close()
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
		if t.Failed() {
			t.Logf("serve stderr:\n%s", p.stderr)
		}
	})
	return p
}

func (p *proc) send(lines ...string) {
	p.t.Helper()
	for _, l := range lines {
		if _, err := io.WriteString(p.in, l+"\n"); err != nil {
			// Say how the server ended (a write fails once it is gone).
			done := make(chan error, 1)
			go func() { done <- p.cmd.Wait() }()
			select {
			case werr := <-done:
				p.t.Fatalf("write: %v; the server had ended: %v (%v)", err, werr, p.cmd.ProcessState)
			case <-time.After(5 * time.Second):
				p.t.Fatalf("write: %v; the server still runs", err)
			}
		}
	}
}

// readToEOF calls each with every stdout line until stdout ends; a read error or a
// line that is not one protocol object fails the test.
func (p *proc) readToEOF(each func(l map[string]any)) {
	p.t.Helper()
	for {
		l, err := p.readLine()
		if err == io.EOF {
			return
		}
		if err != nil {
			p.t.Fatal(err)
		}
		each(l)
	}
}

// readLine reads one stdout line; every line must be one protocol object.
func (p *proc) readLine() (map[string]any, error) {
	line, err := p.out.ReadBytes('\n')
	if err != nil {
		if len(line) > 0 {
			return nil, fmt.Errorf("stdout ends in a partial line %q: %w", line, err)
		}
		return nil, err
	}
	return parseProtocolLine(line)
}

var protocolTypes = map[string]bool{"result": true, "error": true, "stdout": true, "stderr": true, "pong": true, "stats": true, "policy": true}

func parseProtocolLine(line []byte) (map[string]any, error) {
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("stdout line is not a JSON object: %q: %w", line, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("stdout line holds more than one object: %q", line)
	}
	if typ, _ := m["type"].(string); !protocolTypes[typ] {
		return nil, fmt.Errorf("stdout line of unknown type: %q", line)
	}
	return m, nil
}

func (p *proc) next(timeout time.Duration) map[string]any {
	p.t.Helper()
	type res struct {
		m   map[string]any
		err error
	}
	ch := make(chan res, 1)
	go func() { m, err := p.readLine(); ch <- res{m, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			p.t.Fatal(r.err)
		}
		return r.m
	case <-time.After(timeout):
		p.t.Fatalf("no stdout line within %v", timeout)
	}
	return nil
}

// wait waits for the server to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		p.t.Fatalf("serve did not exit within %v", timeout)
	}
	return -1
}

// The acceptance test: 1,000 requests, 32 in flight, malformed lines mixed
// in; every valid request answered exactly once with the right output, every bad
// line answered with its line number, nothing but protocol lines on stdout, and the
// end of input drains and exits 0.
func TestE2EThousandRequests(t *testing.T) {
	const (
		total    = 1000
		inFlight = 32
		maxLine  = 4096
	)
	p := startServe(t, "--max-line-bytes", fmt.Sprint(maxLine))
	type expect struct {
		stdout, stderr string
		exit           int
		stream         bool
	}
	var (
		mu       sync.Mutex
		want     = map[string]expect{}
		badLines = map[int64]string{} // line number -> expected code
	)
	sem := make(chan struct{}, inFlight)
	bad := []struct{ line, code string }{
		{`{"id": "broken", "tool": "echo"`, CodeInvalidJSON},
		{`this is not json`, CodeInvalidJSON},
		{``, CodeInvalidJSON},
		{`{"id":"u","tool":"echo","colour":"red"}`, CodeUnknownField},
		{`{"id":["x"],"tool":"echo"}`, CodeWrongType},
		{`{"id":"t","tool":"echo","timeout_ms":"soon"}`, CodeWrongType},
		{`{"tool":"echo","args":["no id"]}`, CodeMissingField},
		{`{"id":"big","tool":"echo","args":["` + strings.Repeat("z", 2*maxLine) + `"]}`, CodeLineTooLong},
		{`{"type":"reboot","id":"r"}`, CodeUnknownType},
		{`{"type":"cancel","id":"never-sent"}`, CodeUnknownID},
	}
	writerErr := make(chan error, 1)
	go func() {
		var line int64
		w := bufio.NewWriter(p.in)
		put := func(s string) error {
			line++
			_, err := w.WriteString(s + "\n")
			return err
		}
		for i := range total {
			sem <- struct{}{}
			id := fmt.Sprintf("req-%04d", i)
			var msg map[string]any
			var e expect
			switch i % 4 {
			case 0:
				msg = map[string]any{"id": id, "tool": "echo", "args": []string{"hello", id}}
				e = expect{stdout: "hello " + id + "\n"}
			case 1:
				msg = map[string]any{"id": id, "tool": "sh", "args": []string{"-c", fmt.Sprintf("echo out-%d; echo err-%d >&2; exit %d", i, i, i%7)}}
				e = expect{stdout: fmt.Sprintf("out-%d\n", i), stderr: fmt.Sprintf("err-%d\n", i), exit: i % 7}
			case 2:
				msg = map[string]any{"id": id, "tool": "cat", "stdin": base64.StdEncoding.EncodeToString([]byte("in-" + id + "\x00\xff")), "stdin_encoding": "base64"}
				e = expect{stdout: "in-" + id + "\x00\xff"}
			case 3:
				msg = map[string]any{"id": id, "tool": "sh", "args": []string{"-c", "printf %s " + id}, "stream": true}
				e = expect{stdout: id, stream: true}
			}
			mu.Lock()
			want[id] = e
			mu.Unlock()
			b, _ := json.Marshal(msg)
			if err := put(string(b)); err != nil {
				writerErr <- err
				return
			}
			if i%10 == 5 {
				bl := bad[(i/10)%len(bad)]
				mu.Lock()
				badLines[line+1] = bl.code
				mu.Unlock()
				if err := put(bl.line); err != nil {
					writerErr <- err
					return
				}
			}
			if len(sem) == cap(sem) || i == total-1 {
				if err := w.Flush(); err != nil {
					writerErr <- err
					return
				}
			}
		}
		writerErr <- p.in.Close()
	}()

	results := map[string]map[string]any{}
	errorsByLine := map[int64]map[string]any{}
	streamed := map[string]*bytes.Buffer{}
	maxInFlight := 0
	deadline := time.Now().Add(3 * time.Minute)
	checkDeadline := func() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out with %d results", len(results))
		}
	}
	p.readToEOF(func(m map[string]any) {
		checkDeadline()
		switch m["type"] {
		case "result":
			id := m["id"].(string)
			if results[id] != nil {
				t.Errorf("%s answered twice", id)
			}
			results[id] = m
			maxInFlight = max(maxInFlight, len(sem))
			<-sem
		case "error":
			n := int64(m["line"].(float64))
			if errorsByLine[n] != nil {
				t.Errorf("line %d answered twice", n)
			}
			errorsByLine[n] = m
		case "stdout", "stderr":
			id := m["id"].(string)
			if streamed[id] == nil {
				streamed[id] = &bytes.Buffer{}
			}
			if m["type"] == "stdout" {
				streamed[id].WriteString(m["data"].(string))
			}
		default:
			t.Errorf("unexpected line %v", m)
		}
	})
	checkDeadline()
	if err := <-writerErr; err != nil {
		t.Fatalf("writing requests: %v", err)
	}
	if code := p.wait(30 * time.Second); code != 0 {
		t.Errorf("serve exited %d after EOF, want 0", code)
	}
	if len(results) != total {
		t.Errorf("got %d results, want %d", len(results), total)
	}
	for id, e := range want {
		r := results[id]
		if r == nil {
			t.Errorf("%s: no result", id)
			continue
		}
		stdout := r["stdout"].(string)
		if r["stdout_encoding"] == "base64" {
			b, _ := base64.StdEncoding.DecodeString(stdout)
			stdout = string(b)
		}
		if e.stream {
			if stdout != "" {
				t.Errorf("%s: streamed result repeats the output %q", id, stdout)
			}
			if streamed[id] != nil {
				stdout = streamed[id].String()
			}
		}
		if r["status"] != "ok" || stdout != e.stdout || r["stderr"] != e.stderr || r["exit_code"] != float64(e.exit) {
			t.Errorf("%s: got status %v stdout %q stderr %q exit %v; want ok %q %q %d", id, r["status"], stdout, r["stderr"], r["exit_code"], e.stdout, e.stderr, e.exit)
		}
	}
	if len(errorsByLine) != len(badLines) {
		t.Errorf("got %d error lines, want %d", len(errorsByLine), len(badLines))
	}
	for n, code := range badLines {
		e := errorsByLine[n]
		if e == nil {
			t.Errorf("bad line %d: no error line", n)
		} else if e["code"] != code || e["error"] == "" {
			t.Errorf("bad line %d: got %v, want code %s", n, e, code)
		}
	}
	t.Logf("%d results, %d error lines, client saw up to %d in flight", len(results), len(errorsByLine), maxInFlight)
}

func TestE2ECancel(t *testing.T) {
	p := startServe(t, "--kill-grace", "200ms")
	m := testutil.SleepMarker()
	p.send(`{"id":"victim","tool":"sh","args":["-c","trap '' TERM; sleep ` + m + `"]}`)
	waitRunning(t, m)
	p.send(`{"type":"cancel","id":"victim"}`, `{"type":"ping","id":"after"}`)
	got := map[string]map[string]any{}
	for range 2 {
		l := p.next(10 * time.Second)
		got[l["type"].(string)] = l
	}
	if r := got["result"]; r == nil || r["id"] != "victim" || r["status"] != "killed" || r["canceled"] != true {
		t.Fatalf("canceled request: %v", got)
	}
	if got["pong"] == nil {
		t.Fatalf("no pong: %v", got)
	}
	waitGone(t, m)
	p.in.Close()
	if l, err := p.readLine(); err != io.EOF {
		t.Errorf("after EOF: %v %v, want the end of stdout", l, err)
	}
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
}

func TestE2EEOFDrains(t *testing.T) {
	p := startServe(t)
	for i := range 5 {
		p.send(fmt.Sprintf(`{"id":"%d","tool":"sh","args":["-c","sleep 0.5; echo done-%d"]}`, i, i))
	}
	p.in.Close()
	got := map[string]bool{}
	p.readToEOF(func(l map[string]any) {
		if l["type"] != "result" || l["status"] != "ok" || l["stdout"] != fmt.Sprintf("done-%s\n", l["id"]) {
			t.Errorf("line %v", l)
		}
		got[l["id"].(string)] = true
	})
	if len(got) != 5 {
		t.Errorf("got %d results after EOF, want 5", len(got))
	}
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// SIGTERM kills the launches in flight, writes their results and exits.
func TestE2ESIGTERM(t *testing.T) {
	p := startServe(t, "--kill-grace", "200ms")
	m := testutil.SleepMarker()
	for i := range 3 {
		p.send(fmt.Sprintf(`{"id":"%d","tool":"sleep","args":["%s"]}`, i, m))
	}
	// At least one is running; the others may be queued (the profile's concurrency,
	// or a spawner that launches one at a time): all must be answered as killed.
	waitRunning(t, m)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	n := 0
	p.readToEOF(func(l map[string]any) {
		if l["type"] != "result" || l["status"] != "killed" || l["canceled"] != true {
			t.Errorf("line %v", l)
		}
		n++
	})
	if n != 3 {
		t.Errorf("got %d results, want 3", n)
	}
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	waitGone(t, m)
}

// A line written after SIGTERM, while the server still waits for a killed tool, is
// answered with shutting_down (it used to get no answer at all), and so is every
// other line: the binary reads its stdin pipe with deadlines.
func TestE2ESIGTERMAnswersLateLines(t *testing.T) {
	p := startServe(t, "--kill-grace", "2s")
	m := testutil.SleepMarker()
	p.send(`{"id":"long","tool":"sh","args":["-c","trap '' TERM; sleep ` + m + `"]}`)
	waitRunning(t, m)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitStderr("stopping: killing requests in flight") // the stop has begun
	p.send(`{"id":"late","tool":"echo"}`, `{"type":"ping","id":"p"}`)
	got := map[string]map[string]any{}
	p.readToEOF(func(l map[string]any) { got[fmt.Sprint(l["type"], ":", l["id"])] = l })
	if got["result:long"]["status"] != "killed" || got["error:late"]["code"] != CodeShuttingDown || got["error:p"]["code"] != CodeShuttingDown || len(got) != 3 {
		t.Errorf("answers: %v", got)
	}
	if code := p.wait(10 * time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
	waitGone(t, m)
}

// The example clients in examples/ work against the binary (default policy, run in
// a scratch workspace).
func TestE2EExampleClients(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 1)
	bin := testutil.AgentexecBinary(t)
	ws := t.TempDir()
	if err := os.WriteFile(filepath.Join(ws, "file.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Run("go", func(t *testing.T) {
		client := filepath.Join(t.TempDir(), "client")
		build := exec.Command("go", "build", "-o", client, "github.com/agentexec/agentexec/examples/go/client")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build: %v\n%s", err, out)
		}
		cmd := exec.Command(client, "-agentexec", bin)
		cmd.Dir = ws
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("client: %v\n%s", err, out)
		}
		for _, want := range []string{
			`ls         id=1 status=ok exit=0`, `"file.txt\n"`,
			`cat stdin  id=2 status=ok exit=0 signal= canceled=false`, `stdout="from the client\n"`,
			`[stream 3]`, `stream     id=3 status=ok`,
			`denied     id=4 status=denied`,
			`canceled   id=5 status=killed`,
		} {
			if !strings.Contains(string(out), want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("python", func(t *testing.T) {
		py, err := exec.LookPath("python3")
		if err != nil {
			if testutil.Strict() {
				t.Fatal("AGENTEXEC_STRICT=1: python3 not found (make setup installs it)")
			}
			t.Skip("python3 not found")
		}
		cmd := exec.Command(py, filepath.Join(repoRoot(t), "examples/python/client.py"), bin)
		cmd.Dir = ws
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("client: %v\n%s", err, out)
		}
		for _, want := range []string{"1 ok 0 'file.txt\\n'", "2 ok 0 'hello\\n'", "3 denied None",
			"binary ok 1048576 True", "stream ok True True", "protocol error invalid_value line 7", "same first"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
}

func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(wd)) // internal/serve
}
