package serveclient

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeServe answers each input line: a ping with its pong, preceded by a line of
// another id and a streamed chunk of its own (both to be skipped); tool "bad" with
// an error line; "die" by writing to stderr and exiting; anything else with a
// result.
const fakeServe = `#!/bin/sh
while IFS= read -r line; do
	id=$(printf '%s' "$line" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
	case "$line" in
	*'"type":"ping"'*)
		printf '{"type":"result","id":"other","status":"ok","exit_code":0}\n{"type":"stdout","id":"%s","data":"x"}\n{"type":"pong","id":"%s"}\n' "$id" "$id";;
	*'"tool":"bad"'*) printf '{"type":"error","code":"unknown_field","error":"unknown field"}\n';;
	*'"tool":"die"'*) echo 'policy: line 3: no such tool' >&2; exit 2;;
	*) printf '{"type":"result","id":"%s","status":"ok","exit_code":3}\n' "$id";;
	esac
done
`

func start(t *testing.T, script string) *Client {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "serve")
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Start(context.Background(), bin, []string{"serve"}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	c := start(t, fakeServe)
	if err := c.Ping("p0", 0); err != nil {
		t.Fatalf("Ping: %v (lines of other ids and chunks must be skipped)", err)
	}
	l, err := c.RoundTrip(`{"id":"r1","tool":"true"}`, "r1")
	if err != nil || l.Type != "result" || l.ExitCode == nil || *l.ExitCode != 3 {
		t.Fatalf("RoundTrip r1: %+v %v, want its result, exit 3", l, err)
	}
	if l, err := c.RoundTrip(`{"id":"r2","tool":"bad"}`, "r2"); err != nil || l.Type != "error" || l.Error != "unknown field" {
		t.Fatalf("RoundTrip r2: %+v %v, want the error line", l, err)
	}
	// The error names serve's stderr when its copy has arrived (best effort: the
	// output's end may come first); after Close, Stderr holds it.
	if _, err = c.RoundTrip(`{"id":"r3","tool":"die"}`, "r3"); err == nil || !strings.Contains(err.Error(), "serve output: EOF") {
		t.Fatalf("RoundTrip r3: %v, want the output's end", err)
	}
	if err := c.Close(); err == nil || !strings.Contains(err.Error(), "exit status 2") {
		t.Errorf("Close: %v, want exit status 2", err)
	}
	if got := c.Stderr(); !strings.Contains(got, "policy: line 3: no such tool") {
		t.Errorf("Stderr after Close: %q", got)
	}
}

// A serve that never answers is killed at the ping's timeout, so that Close
// returns (control: a serve that ends at its input's end closes unkilled).
func TestPingTimeout(t *testing.T) {
	c := start(t, "#!/bin/sh\necho starting >&2\nexec sleep 30\n")
	err := c.Ping("p0", 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no pong within") {
		t.Fatalf("Ping: %v, want a timeout", err)
	}
	if err := c.Close(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Close after the timeout: %v, want the process killed", err)
	}

	c = start(t, "#!/bin/sh\nexec cat >/dev/null\n")
	if err := c.Close(); err != nil {
		t.Errorf("control: a serve that ends at its input's end: Close %v", err)
	}
}

func TestFirstLine(t *testing.T) {
	if got := FirstLine("  one\ntwo\n"); got != "one" {
		t.Errorf("FirstLine = %q", got)
	}
	if got := FirstLine(strings.Repeat("x", 300)); len(got) != 200+len("…") {
		t.Errorf("FirstLine of 300 bytes: %d bytes", len(got))
	}
}
