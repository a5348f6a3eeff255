package mcp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/testutil"
	"github.com/agentexec/agentexec/policy"
)

// The test binary serves as the runtime's spawner.
func TestMain(m *testing.M) {
	agentexec.ServeSpawner()
	code := m.Run()
	testutil.RemoveAgentexecBinary()
	os.Exit(code)
}

// testPolicyYAML: rg, git, cat and a shell in a scratch workspace, a tool with a
// small output cap, and a tool name outside [A-Za-z0-9_-].
const testPolicyYAML = `version: 1
workspace: ${WORKSPACE}
path: [/usr/local/bin, /usr/bin, /bin]
shell: sh
defaults:
  filesystem:
    read: [/usr, /lib, /lib64, /bin, /etc, /proc, /dev/null, /dev/zero, "${WORKSPACE}"]
    write: ["${WORKSPACE}/out", /dev/null]
    exec: [/usr, /bin, /lib, /lib64]
  env:
    set:
      PATH: /usr/bin:/bin
      HOME: /nonexistent
      GIT_CONFIG_NOSYSTEM: "1"
      GIT_CONFIG_COUNT: "1"
      GIT_CONFIG_KEY_0: safe.directory
      GIT_CONFIG_VALUE_0: "*"
  limits: {timeout: 60s, output: 1MiB}
  enforcement: {landlock: require, cgroup: best_effort}
tools:
  rg: {hot: true}
  git: {hot: true, args: {deny: [push, "-c"]}}
  cat: {hot: true}
  sh: {hot: true}
  sleep: {}
  head: {limits: {output: 1KiB}}
  g++: {exec: "true"}
`

// scratch makes a workspace with a file and a git repository (made by the host's
// git, outside the sandbox) and returns it with the policy file's path.
func scratch(t testing.TB) (ws, polFile string) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireLandlockABI(t, 1)
	git := testutil.RequireCommand(t, "git")
	testutil.RequireCommand(t, "rg")
	ws = t.TempDir()
	for _, d := range []string{"out", "sub"} {
		if err := os.Mkdir(filepath.Join(ws, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ws, "notes.txt"), []byte("alpha\nTODO: beta\ngamma\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "sub", "x.txt"), []byte("in sub\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"init", "-q"}, {"add", "notes.txt"},
		{"-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "first commit"},
	} {
		cmd := exec.Command(git, args...)
		cmd.Dir = ws
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+ws)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	polFile = filepath.Join(ws, "policy.yaml")
	if err := os.WriteFile(polFile, []byte(testPolicyYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	return ws, polFile
}

func loadPolicy(t testing.TB, file, ws string) *policy.Policy {
	t.Helper()
	opts := policy.HostOptions()
	opts.Workspace = ws
	p, err := policy.Load(file, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// transport connects a client session to an `agentexec mcp` server.
type transport struct {
	name    string
	connect func(t *testing.T, ws, polFile string, opts *sdk.ClientOptions) *sdk.ClientSession
}

var transports = []transport{
	{"stdio", connectStdio},
	{"http", func(t *testing.T, ws, polFile string, opts *sdk.ClientOptions) *sdk.ClientSession {
		url, _ := startHTTP(t, ws, polFile, Config{})
		return connectHTTP(t, url, opts)
	}},
}

// connectStdio runs the agentexec binary as `agentexec mcp` and connects to it
// over its stdin and stdout, as a desktop agent does.
func connectStdio(t *testing.T, ws, polFile string, opts *sdk.ClientOptions) *sdk.ClientSession {
	t.Helper()
	cmd := exec.Command(testutil.AgentexecBinary(t), "mcp", "--policy", polFile, "--workspace", ws, "--log-level", "warn")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "agentexec-test", Version: "1"}, opts).
		Connect(context.Background(), &sdk.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect over stdio: %v", err)
	}
	t.Cleanup(func() {
		if err := cs.Close(); err != nil {
			t.Logf("close: %v", err)
		}
		if t.Failed() {
			t.Logf("agentexec mcp stderr:\n%s", stderr.String())
		}
	})
	return cs
}

// startHTTP serves a Server on a loopback port, in process, and returns its URL.
func startHTTP(t *testing.T, ws, polFile string, cfg Config, hc ...HTTPConfig) (string, *Server) {
	t.Helper()
	pol := loadPolicy(t, polFile, ws)
	cfg.ShellTool = true
	s, err := New(pol, func(ctx context.Context) (*agentexec.Runtime, error) { return agentexec.New(ctx, pol) }, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Start(context.Background())
	var c HTTPConfig
	if len(hc) > 0 {
		c = hc[0]
	}
	srv := httptest.NewServer(s.HTTPHandler(c))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return srv.URL, s
}

func connectHTTP(t *testing.T, url string, opts *sdk.ClientOptions) *sdk.ClientSession {
	t.Helper()
	cs, err := sdk.NewClient(&sdk.Implementation{Name: "agentexec-test", Version: "1"}, opts).
		Connect(context.Background(), &sdk.StreamableClientTransport{Endpoint: url, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("connect over HTTP: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// call calls a tool and decodes its structured content.
func call(t *testing.T, ctx context.Context, cs *sdk.ClientSession, tool string, args any) (*sdk.CallToolResult, Output, string) {
	t.Helper()
	res, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("call %s %v: %v", tool, args, err)
	}
	return decode(t, res)
}

func decode(t *testing.T, res *sdk.CallToolResult) (*sdk.CallToolResult, Output, string) {
	t.Helper()
	var out Output
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("structured content %s: %v", b, err)
	}
	if len(res.Content) != 1 {
		t.Fatalf("want one content block, got %d", len(res.Content))
	}
	tc, ok := res.Content[0].(*sdk.TextContent)
	if !ok {
		t.Fatalf("content is %T, want text", res.Content[0])
	}
	return res, out, tc.Text
}

func exitCode(o Output) int {
	if o.ExitCode == nil {
		return -999
	}
	return *o.ExitCode
}

func TestListTools(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ws, pol := scratch(t)
			cs := tr.connect(t, ws, pol, nil)
			res, err := cs.ListTools(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]*sdk.Tool{}
			var names []string
			for _, tl := range res.Tools {
				got[tl.Name] = tl
				names = append(names, tl.Name)
			}
			want := []string{"cat", "g__", "git", "head", "rg", "sh", "shell", "sleep"} // sorted by name, as the SDK lists them
			if strings.Join(names, " ") != strings.Join(want, " ") {
				t.Fatalf("tools %q, want %q", names, want)
			}
			d := got["git"].Description
			for _, s := range []string{"/usr/bin/git", "workspace " + ws, "May write: /dev/null, " + ws + "/out.", "Network: none", "timeout 1m0s", `"push"`} {
				if !strings.Contains(d, s) {
					t.Errorf("git's description lacks %q:\n%s", s, d)
				}
			}
			schema, _ := json.Marshal(got["cat"].InputSchema)
			if !strings.Contains(string(schema), `"required":["args"]`) || !strings.Contains(string(schema), `"additionalProperties":false`) {
				t.Errorf("cat's input schema %s", schema)
			}
			if got["shell"].Description == "" || !strings.Contains(got["shell"].Description, "sh -c SCRIPT") {
				t.Errorf("shell's description %q", got["shell"].Description)
			}
		})
	}
}

func TestCalls(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ws, pol := scratch(t)
			cs := tr.connect(t, ws, pol, nil)
			ctx := context.Background()

			res, out, text := call(t, ctx, cs, "cat", map[string]any{"args": []string{"notes.txt"}})
			if res.IsError || exitCode(out) != 0 || out.Stdout != "alpha\nTODO: beta\ngamma\n" || !strings.HasPrefix(text, "exit code 0 (cat") {
				t.Errorf("cat: isError %v %+v\n%s", res.IsError, out, text)
			}
			_, out, _ = call(t, ctx, cs, "cat", map[string]any{"args": []string{}, "stdin": "from stdin"})
			if out.Stdout != "from stdin" {
				t.Errorf("cat with stdin: %+v", out)
			}
			_, out, _ = call(t, ctx, cs, "cat", map[string]any{"args": []string{"x.txt"}, "cwd": "sub"})
			if out.Stdout != "in sub\n" {
				t.Errorf("cat in cwd sub: %+v", out)
			}
			_, out, _ = call(t, ctx, cs, "rg", map[string]any{"args": []string{"-n", "TODO"}})
			if exitCode(out) != 0 || !strings.Contains(out.Stdout, "2:TODO: beta") {
				t.Errorf("rg TODO: %+v", out)
			}
			// A tool's own non-zero exit is its answer, not an error.
			res, out, text = call(t, ctx, cs, "rg", map[string]any{"args": []string{"no-such-word"}})
			if res.IsError || exitCode(out) != 1 || out.Status != "ok" || !strings.HasPrefix(text, "exit code 1") {
				t.Errorf("rg without a match: isError %v %+v\n%s", res.IsError, out, text)
			}
			_, out, _ = call(t, ctx, cs, "git", map[string]any{"args": []string{"log", "--oneline"}})
			if exitCode(out) != 0 || !strings.Contains(out.Stdout, "first commit") {
				t.Errorf("git log: %+v", out)
			}
			res, out, _ = call(t, ctx, cs, "shell", map[string]any{"script": "echo hi | tr a-z A-Z"})
			if res.IsError || out.Stdout != "HI\n" || out.Tool != "sh" {
				t.Errorf("shell: %+v", out)
			}
			// The policy's output cap, said so.
			_, out, text = call(t, ctx, cs, "head", map[string]any{"args": []string{"-c", "5000", "/dev/zero"}})
			if !out.StdoutTruncated || out.OutputCapBytes != 1024 || out.StdoutDropped != 5000-1024 || !strings.Contains(text, "truncated at the policy's output cap of 1 KiB") {
				t.Errorf("head over the cap: %+v\n%s", out, text)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ws, pol := scratch(t)
			cs := tr.connect(t, ws, pol, nil)
			ctx := context.Background()
			// Denied by an argv rule: isError, the rule and a hint; nothing ran.
			res, out, text := call(t, ctx, cs, "git", map[string]any{"args": []string{"push", "origin"}})
			if !res.IsError || out.Status != "denied" || len(out.Denials) != 1 || out.Denials[0].Rule != "tools.git.args.deny[0]" ||
				out.Denials[0].Hint == "" || out.ExitCode != nil || !strings.Contains(text, "to allow it:") {
				t.Errorf("git push: isError %v %+v\n%s", res.IsError, out, text)
			}
			// cwd out of the roots.
			res, out, _ = call(t, ctx, cs, "cat", map[string]any{"args": []string{"notes.txt"}, "cwd": "../../../.."})
			if !res.IsError || out.Status != "denied" || len(out.Denials) != 1 || out.Denials[0].Op != "dir" {
				t.Errorf("cwd outside: %+v", out)
			}
			// A timeout: isError, the limit named, the tree killed.
			res, out, text = call(t, ctx, cs, "sleep", map[string]any{"args": []string{"30"}, "timeout_ms": 200})
			if !res.IsError || out.Status != "timeout" || !out.TimedOut || out.TimeoutMS != 200 || !strings.Contains(text, "after the 200ms limit") {
				t.Errorf("sleep 30 with timeout_ms 200: %+v\n%s", out, text)
			}
			// Malformed arguments: an isError result that names the field.
			for _, tc := range []struct {
				args  any
				field string
			}{
				{map[string]any{"args": "notes.txt"}, "arguments.args"},
				{map[string]any{"args": []any{"a", 2}}, "arguments.args[1]"},
				{map[string]any{"args": []string{}, "timeout_ms": "10"}, "arguments.timeout_ms"},
				{map[string]any{"args": []string{}, "env": map[string]string{"A": "b"}}, "arguments.env"},
				{map[string]any{"stdin": "x"}, "arguments.args"},
				{map[string]any{"args": []string{}, "cwd": "/etc"}, "arguments.cwd"},
			} {
				res, out, text := call(t, ctx, cs, "cat", tc.args)
				if !res.IsError || out.Status != "error" || !strings.HasPrefix(out.Error, tc.field+": ") || !strings.Contains(text, tc.field) {
					t.Errorf("cat %v: isError %v %+v\n%s", tc.args, res.IsError, out, text)
				}
			}
			// An unknown tool is a JSON-RPC error.
			if _, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "curl", Arguments: map[string]any{"args": []string{}}}); err == nil || !strings.Contains(err.Error(), `unknown tool "curl"`) {
				t.Errorf("unknown tool: %v", err)
			}
			// The server is still there.
			if _, out, _ = call(t, ctx, cs, "cat", map[string]any{"args": []string{"notes.txt"}}); exitCode(out) != 0 {
				t.Errorf("cat after the refusals: %+v", out)
			}
		})
	}
}

// waitProcs waits until the processes whose command line holds marker are
// present (want true) or gone (want false), for at most 20 s.
func waitProcs(t *testing.T, marker string, want bool) {
	t.Helper()
	for range 400 {
		if (len(testutil.ProcsWith(marker)) > 0) == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("processes with %s: want present=%v, still %v", marker, want, testutil.ProcsWith(marker))
}

// Canceling a call (notifications/cancelled) kills the launch's whole tree.
func TestCancelKillsTree(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ws, pol := scratch(t)
			cs := tr.connect(t, ws, pol, nil)
			m1, m2 := testutil.SleepMarker(), testutil.SleepMarker()+"1"
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := cs.CallTool(ctx, &sdk.CallToolParams{Name: "shell", Arguments: map[string]any{
					"script": fmt.Sprintf("sleep %s & sleep %s; wait", m1, m2)}})
				done <- err
			}()
			waitProcs(t, m1, true)
			waitProcs(t, m2, true)
			cancel()
			if err := <-done; err == nil {
				t.Error("the canceled call returned no error")
			}
			waitProcs(t, m1, false)
			waitProcs(t, m2, false)
			// The session goes on.
			if _, out, _ := call(t, context.Background(), cs, "cat", map[string]any{"args": []string{"notes.txt"}}); exitCode(out) != 0 {
				t.Errorf("cat after the cancel: %+v", out)
			}
		})
	}
}

func TestConcurrentCalls(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ws, pol := scratch(t)
			cs := tr.connect(t, ws, pol, nil)
			var wg sync.WaitGroup
			errs := make(chan string, 32)
			for i := range 32 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "shell", Arguments: map[string]any{
						"script": fmt.Sprintf("echo call-%d; sleep 0.1", i)}})
					if err != nil {
						errs <- fmt.Sprintf("call %d: %v", i, err)
						return
					}
					b, _ := json.Marshal(res.StructuredContent)
					var out Output
					if json.Unmarshal(b, &out) != nil || exitCode(out) != 0 || out.Stdout != fmt.Sprintf("call-%d\n", i) {
						errs <- fmt.Sprintf("call %d: %s", i, b)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Error(e)
			}
		})
	}
}

// Progress notifications reach a client that sent a progress token, for a
// launch that runs longer than the interval (in process, with a short interval).
func TestProgress(t *testing.T) {
	ws, pol := scratch(t)
	url, _ := startHTTP(t, ws, pol, Config{ProgressInterval: 50 * time.Millisecond})
	var mu sync.Mutex
	var got []*sdk.ProgressNotificationParams
	cs := connectHTTP(t, url, &sdk.ClientOptions{ProgressNotificationHandler: func(_ context.Context, r *sdk.ProgressNotificationClientRequest) {
		mu.Lock()
		got = append(got, r.Params)
		mu.Unlock()
	}})
	p := &sdk.CallToolParams{Name: "sleep", Arguments: map[string]any{"args": []string{"1"}}}
	p.SetProgressToken("tok-1")
	res, err := cs.CallTool(context.Background(), p)
	if err != nil || res.IsError {
		t.Fatalf("sleep 1: %v %+v", err, res)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) == 0 {
		t.Fatal("no progress notification for a launch of 1 s with a 50 ms interval")
	}
	for i, n := range got {
		if n.ProgressToken != "tok-1" || !strings.HasPrefix(n.Message, "sleep running for") || (i > 0 && n.Progress <= got[i-1].Progress) {
			t.Errorf("notification %d: %+v", i, n)
		}
	}
	// Without a token, none.
	got = nil
	mu.Unlock()
	call(t, context.Background(), cs, "sleep", map[string]any{"args": []string{"0.3"}})
	mu.Lock()
	if len(got) != 0 {
		t.Errorf("progress without a token: %+v", got)
	}
}

// One HTTP session cannot cancel another's call: the same cancellation, sent in
// the other session, does nothing; sent in the call's own session (the control),
// it kills the launch.
func TestHTTPSessionIsolation(t *testing.T) {
	ws, pol := scratch(t)
	url, _ := startHTTP(t, ws, pol, Config{})
	a := connectHTTP(t, url, nil)
	marker := testutil.SleepMarker()
	done := make(chan *sdk.CallToolResult, 1)
	go func() {
		res, err := a.CallTool(context.Background(), &sdk.CallToolParams{Name: "sleep", Arguments: map[string]any{"args": []string{marker}, "timeout_ms": 60000}})
		if err != nil {
			t.Errorf("call: %v", err)
		}
		done <- res
	}()
	waitProcs(t, marker, true)

	b := rawSession(t, url)
	cancelAll := func(sess string) {
		for id := range 16 { // the request ids a client can have used by now
			post(t, url, sess, fmt.Sprintf(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":%d,"reason":"test"}}`, id))
		}
		// A request after the notifications: they were handled when it is answered.
		if code, body := post(t, url, sess, `{"jsonrpc":"2.0","id":99,"method":"ping"}`); code != http.StatusOK {
			t.Fatalf("ping: %d %s", code, body)
		}
	}
	cancelAll(b)
	if len(testutil.ProcsWith(marker)) == 0 {
		t.Fatal("another session's cancellation killed the call")
	}
	select {
	case res := <-done:
		t.Fatalf("the call ended after another session's cancellation: %+v", res)
	default:
	}
	// The control: the same notifications in the call's own session cancel it.
	cancelAll(a.ID())
	waitProcs(t, marker, false)
}

// rawSession initializes a session with plain HTTP requests and returns its id.
func rawSession(t *testing.T, url string) string {
	t.Helper()
	req := mustReq(t, url, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || id == "" {
		t.Fatalf("initialize: %d, session %q", resp.StatusCode, id)
	}
	post(t, url, id, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return id
}

func mustReq(t *testing.T, url, session, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	return req
}

func post(t *testing.T, url, session, body string) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(mustReq(t, url, session, body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, sb.String()
}
