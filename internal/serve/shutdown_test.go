package serve

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/internal/testutil"
)

// Every line the server reads gets exactly one answer, also the lines written after
// the stop began (SIGTERM in the command: ctx here), which are answered with
// shutting_down; and no line is taken off the input without an answer: what the
// server did not answer is still in the pipe when Serve returns. The input is an
// os.Pipe, which has read deadlines (as the command's stdin has).
//
// Control: before shutting_down was sent for lines read during the stop, line 2
// (written after the stop began, while a request still ran) got no answer at all.
func TestServeShutdownAnswersEveryLine(t *testing.T) {
	const grace = 2 * time.Second
	rt := newRuntime(t, agentexec.WithKillGrace(grace))
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inR.Close()
	defer inW.Close()
	outR, outW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		err := Serve(ctx, rt, inR, outW, Config{})
		outW.Close()
		done <- err
	}()
	lines := make(chan map[string]any, 1<<16)
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Errorf("output line %q: %v", sc.Text(), err)
			}
			lines <- m
		}
		close(lines)
	}()
	var written []string
	write := func(l string) {
		t.Helper()
		if _, err := io.WriteString(inW, l+"\n"); err != nil {
			t.Fatal(err)
		}
		written = append(written, l+"\n")
	}
	m := testutil.SleepMarker()
	// The tool ignores SIGTERM, so the stop takes the kill grace: lines written
	// meanwhile are read while the server is stopping.
	write(`{"id":"long","tool":"sh","args":["-c","trap '' TERM; sleep ` + m + `"]}`)
	waitRunning(t, m)
	cancel()
	write(`{"id":"late","tool":"echo","args":["never"]}`) // line 2
	var got []map[string]any
	select {
	case l := <-lines:
		got = append(got, l)
		if l["type"] != "error" || l["code"] != CodeShuttingDown || l["line"] != 2.0 || l["id"] != "late" {
			t.Fatalf("line 2, written after the stop began: answered %v, want shutting_down", l)
		}
	case <-time.After(grace):
		t.Fatalf("line 2, written after the stop began, got no answer within %v", grace)
	}
	// Lines of every kind while the server finishes its stop, until it returns.
	kinds := []string{`{"type":"ping","id":"p%d"}`, `{"id":"r%d","tool":"echo"}`, `not json %d`, `{"type":"stats","id":"s%d"}`, `{"type":"cancel","id":"long%d"}`}
writing:
	for i := 0; ; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Serve: %v", err)
			}
			break writing
		default:
		}
		// A full pipe (the server stopped reading) must not block the test: Serve
		// returns soon after.
		l := fmt.Sprintf(kinds[i%len(kinds)], i) + "\n"
		_ = inW.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := io.WriteString(inW, l); err == nil {
			written = append(written, l)
		} else if n > 0 {
			t.Fatalf("partial write of %d bytes: %v", n, err)
		}
		time.Sleep(time.Millisecond)
	}
	for l := range lines {
		got = append(got, l)
	}
	answered := map[int64]int{}
	sawResult := false
	for _, l := range got {
		switch l["type"] {
		case "result":
			if l["id"] != "long" || l["status"] != "killed" || l["canceled"] != true || sawResult {
				t.Errorf("result %v", l)
			}
			sawResult = true
			answered[1]++
		case "error":
			n := int64(l["line"].(float64))
			answered[n]++
			if l["code"] != CodeShuttingDown {
				t.Errorf("line %d: %v, want shutting_down", n, l)
			}
		default:
			t.Errorf("unexpected line %v", l)
		}
	}
	k := int64(len(answered))
	for n := int64(1); n <= k; n++ {
		if answered[n] != 1 {
			t.Errorf("line %d answered %d times", n, answered[n])
		}
	}
	// What was not answered was not read: it is still in the pipe, whole.
	if err := inR.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(inR)
	if want := strings.Join(written[k:], ""); string(rest) != want {
		t.Errorf("%d lines written, %d answered; the pipe holds %d bytes, want the %d unanswered lines (%d bytes)", len(written), k, len(rest), len(written)-int(k), len(want))
	}
	t.Logf("%d lines written, %d answered, %d left unread", len(written), k, len(written)-int(k))
	waitGone(t, m)
}

// A request that waits for admission (backpressure) when the stop begins is
// answered with shutting_down. Control: it used to get nothing.
func TestServeShutdownWhileBlockedOnAdmission(t *testing.T) {
	rt := newRuntime(t, agentexec.WithKillGrace(100*time.Millisecond))
	s := startSession(t, rt, Config{MaxInflight: 1, MaxQueued: 1})
	m := testutil.SleepMarker()
	s.send(
		`{"id":"1","tool":"sleep","args":["`+m+`"]}`,
		`{"id":"2","tool":"sleep","args":["`+m+`"]}`,
		`{"id":"3","tool":"true"}`, // waits: 1 runs, 2 is queued
	)
	waitRunning(t, m)
	s.cancel()
	lines, err := s.closeAndCollect(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	res, errs := byID(lines, "result"), byID(lines, "error")
	if res["1"]["status"] != "killed" || res["2"]["status"] != "killed" || errs["3"]["code"] != CodeShuttingDown || len(lines) != 3 {
		t.Fatalf("answers: %v", lines)
	}
	waitGone(t, m)
}

// A stats line that follows a result counts that result and not its request as in
// flight (the counters drop before the result is written), and its counters add
// up. Under -race this failed a few times in 50 before (issue 19).
func TestServeStatsAfterResult(t *testing.T) {
	rt := newRuntime(t)
	s := startSession(t, rt, Config{})
	for i := range 50 {
		s.send(fmt.Sprintf(`{"id":"t%d","tool":"true"}`, i))
		if l := s.next(10 * time.Second); l["type"] != "result" || l["status"] != "ok" {
			t.Fatal(l)
		}
		s.send(`{"type":"stats"}`)
		st := s.next(5 * time.Second)
		if st["in_flight"] != 0.0 || st["running"] != 0.0 || st["requests"] != float64(i+1) || st["results"] != float64(i+1) {
			t.Fatalf("stats after result %d: %v", i, st)
		}
	}
}

// The stats counters add up in every snapshot: requests = results + in_flight,
// in_flight = running + queued, lines = requests + errors + controls, results =
// the sum of statuses (and of backends, for launched results).
func TestServeStatsAddUp(t *testing.T) {
	rt := newRuntime(t, agentexec.WithKillGrace(100*time.Millisecond))
	s := startSession(t, rt, Config{MaxInflight: 2, MaxQueued: 8})
	m := testutil.SleepMarker()
	s.send(
		`{"id":"a","tool":"sleep","args":["`+m+`"]}`,
		`{"id":"b","tool":"sleep","args":["`+m+`"]}`,
		`{"id":"c","tool":"echo","args":["queued"]}`,
		`{"id":"a","tool":"echo"}`, // duplicate id
		`garbage`,
		`{"id":"d","tool":"rm"}`, // denied
		`{"type":"ping"}`,
		`{"type":"cancel","id":"nope"}`,
	)
	waitRunning(t, m)
	check := func(st map[string]any) {
		t.Helper()
		n := func(k string) float64 { v, _ := st[k].(float64); return v }
		var sum float64
		for _, v := range st["statuses"].(map[string]any) {
			sum += v.(float64)
		}
		if n("requests") != n("results")+n("in_flight") || n("in_flight") != n("running")+n("queued") ||
			n("lines") != n("requests")+n("errors")+n("controls") || sum != n("results") {
			t.Errorf("stats do not add up: %v", st)
		}
	}
	s.send(`{"type":"stats","id":"mid"}`)
	var st map[string]any
	for st == nil {
		if l := s.next(10 * time.Second); l["type"] == "stats" {
			st = l
		}
	}
	check(st)
	if st["running"] != 2.0 || st["lines"] != 9.0 || st["errors"] != 3.0 {
		t.Errorf("mid stats: %v", st)
	}
	s.send(`{"type":"cancel","id":"a"}`, `{"type":"cancel","id":"b"}`, `{"type":"cancel","id":"c"}`)
	// Wait for a, b (killed), c (killed or ok) and d (denied) results.
	got := map[string]bool{}
	for len(got) < 4 {
		if l := s.next(10 * time.Second); l["type"] == "result" {
			got[l["id"].(string)] = true
		}
	}
	s.send(`{"type":"stats","id":"end"}`)
	for {
		l := s.next(5 * time.Second)
		if l["type"] == "stats" {
			check(l)
			if l["in_flight"] != 0.0 || l["results"] != 4.0 {
				t.Errorf("end stats: %v", l)
			}
			break
		}
	}
	waitGone(t, m)
}

// Output that is mostly escapes goes as base64, so that a result line stays within
// 4/3 of the output. Control: agentexec.EncodeOutput alone leaves it text, whose
// JSON is six times the output.
func TestServeOutputLineBound(t *testing.T) {
	rt := newRuntime(t)
	s := startSession(t, rt, Config{})
	const n = 100000
	zeros := base64.StdEncoding.EncodeToString(make([]byte, n))
	s.send(`{"id":"z","tool":"cat","stdin":"`+zeros+`","stdin_encoding":"base64"}`,
		`{"id":"zs","tool":"cat","stdin":"`+zeros+`","stdin_encoding":"base64","stream":true}`)
	var streamed []byte
	for done := 0; done < 2; {
		l := s.next(20 * time.Second)
		b, _ := json.Marshal(l)
		if len(b) > 4*n/3+4096 {
			t.Errorf("%s line of %d bytes for %d bytes of output", l["type"], len(b), n)
		}
		switch l["type"] {
		case "result":
			done++
			if l["id"] == "z" {
				data, err := base64.StdEncoding.DecodeString(l["stdout"].(string))
				if l["stdout_encoding"] != "base64" || err != nil || len(data) != n || strings.Trim(string(data), "\x00") != "" {
					t.Errorf("result: encoding %v, %d bytes, %v", l["stdout_encoding"], len(data), err)
				}
			}
		case "stdout":
			data, err := base64.StdEncoding.DecodeString(l["data"].(string))
			if l["encoding"] != "base64" || err != nil {
				t.Errorf("chunk: encoding %v, %v", l["encoding"], err)
			}
			streamed = append(streamed, data...)
		}
	}
	if len(streamed) != n {
		t.Errorf("streamed %d bytes, want %d", len(streamed), n)
	}
	text, enc := agentexec.EncodeOutput(make([]byte, n))
	if b, _ := json.Marshal(text); enc != "" || len(b) < 6*n {
		t.Errorf("control: EncodeOutput gave %q encoding and %d JSON bytes; the test no longer shows the blow-up", enc, len(b))
	}
}

// jsonStringLen is exactly what encoding/json writes (without HTML escaping).
func TestJSONStringLen(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune{'a', '"', '\\', '\n', '\t', '\r', '\b', '\f', 0, 1, 0x1f, 0x7f, '<', '&', 'é', '€', '\u2028', '\u2029', 0x1F600}
	for range 2000 {
		var sb strings.Builder
		for range r.IntN(40) {
			sb.WriteRune(alphabet[r.IntN(len(alphabet))])
		}
		s := sb.String()
		var buf strings.Builder
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		if want := buf.Len() - 3; jsonStringLen(s) != want { // quotes and newline
			t.Fatalf("jsonStringLen(%q) = %d, encoding/json writes %d", s, jsonStringLen(s), want)
		}
	}
	if got, enc := compactText("plain text\n", ""); got != "plain text\n" || enc != "" {
		t.Errorf("plain text: %q %q", got, enc)
	}
	if got := cutText(strings.Repeat("€", 3000), 100); len(got) > 100 || !strings.HasSuffix(got, "…") {
		t.Errorf("cutText: %d bytes %q", len(got), got[len(got)-6:])
	}
}
