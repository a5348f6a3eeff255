package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"testing"

	"github.com/agentexec/agentexec"
)

// BenchmarkLibraryRun is the baseline: rt.Run of /bin/true, one at a time.
func BenchmarkLibraryRun(b *testing.B) {
	rt := newRuntime(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		r, err := rt.Run(ctx, agentexec.Request{Tool: "true"})
		if err != nil || r.ExitCode != 0 {
			b.Fatalf("run: %v %+v", err, r)
		}
	}
}

// BenchmarkServeRoundTrip is the same launch through the protocol, in process: a
// request line written to the server's input, its result line read back. The
// difference from BenchmarkLibraryRun is the server's overhead (decode, dispatch,
// encode, the single writer) per request.
func BenchmarkServeRoundTrip(b *testing.B) {
	rt := newRuntime(b)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- Serve(context.Background(), rt, inR, outW, Config{}); outW.Close() }()
	out := bufio.NewReader(outR)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := fmt.Fprintf(inW, `{"id":"%d","tool":"true"}`+"\n", i); err != nil {
			b.Fatal(err)
		}
		line, err := out.ReadBytes('\n')
		if err != nil {
			b.Fatal(err)
		}
		m, err := parseProtocolLine(line)
		if err != nil || m["status"] != "ok" {
			b.Fatalf("result %s %v", line, err)
		}
	}
	b.StopTimer()
	inW.Close()
	if _, err := io.Copy(io.Discard, out); err != nil {
		b.Fatal(err)
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

// BenchmarkServeBinaryRoundTrip goes through the built binary over OS pipes, as a
// client in another language would.
func BenchmarkServeBinaryRoundTrip(b *testing.B) {
	p := startServe(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := fmt.Fprintf(p.in, `{"id":"%d","tool":"true"}`+"\n", i); err != nil {
			b.Fatal(err)
		}
		line, err := p.out.ReadBytes('\n')
		if err != nil {
			b.Fatal(err)
		}
		if m, err := parseProtocolLine(line); err != nil || m["status"] != "ok" {
			b.Fatalf("result %s %v", line, err)
		}
	}
}

// BenchmarkServeDecodeEncode is the protocol's own cost, without a launch: decoding
// a run request line and encoding a result line.
func BenchmarkServeDecodeEncode(b *testing.B) {
	line := []byte(`{"id":"r-123","tool":"git","args":["status","--short"],"cwd":"src","env":{"LANG":"C"},"timeout_ms":5000}`)
	res := agentexec.Result{Tool: "git", Stdout: []byte(" M go.mod\n M go.sum\n"), Backend: agentexec.BackendUserspace, Template: agentexec.TemplateHit}
	var buf bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		m, perr := DecodeMessage(line)
		if perr != nil {
			b.Fatal(perr)
		}
		_ = m.Request()
		buf.Reset()
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(agentexec.NewResultJSON(m.ID, res, nil)); err != nil {
			b.Fatal(err)
		}
	}
}
