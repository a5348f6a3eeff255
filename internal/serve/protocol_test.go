package serve

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestDecodeMessageErrors(t *testing.T) {
	cases := []struct {
		line, code, id, mention string
	}{
		{``, CodeInvalidJSON, "", "empty line"},
		{`   `, CodeInvalidJSON, "", "empty line"},
		{`garbage`, CodeInvalidJSON, "", "not a JSON object"},
		{`[1,2]`, CodeInvalidJSON, "", "not a JSON object"},
		{`null`, CodeInvalidJSON, "", "not a JSON object"},
		{`"id"`, CodeInvalidJSON, "", "not a JSON object"},
		{`[{"id":"a","tool":"cat"}]`, CodeInvalidJSON, "", "not a JSON object"},
		{"\ufeff{\"id\":\"a\",\"tool\":\"cat\"}", CodeInvalidJSON, "", "not a JSON object"},
		{`{"id":"a","tool":"cat"`, CodeInvalidJSON, "", "unexpected end"},
		{`{"id":"a","tool":"cat",}`, CodeInvalidJSON, "", "invalid JSON at byte"},
		{`{"id":"a","tool":"cat"} {"id":"b"}`, CodeInvalidJSON, "a", "trailing data"},
		{`{"id":"a","tool":"cat"}x`, CodeInvalidJSON, "a", "trailing data"},
		{`{"id":"a","tool":"cat","bogus":1}`, CodeUnknownField, "a", `"bogus"`},
		{`{"id":"a","tool":"cat","Stdin_Encodingx":1}`, CodeUnknownField, "a", `Stdin_Encodingx`},
		{`{"id":7,"tool":"cat"}`, CodeWrongType, "", `field "id": got number, want a string`},
		{`{"id":"a","tool":"cat","args":"x"}`, CodeWrongType, "a", `field "args": got string, want an array of strings`},
		{`{"id":"a","tool":"cat","args":[1]}`, CodeWrongType, "a", `field "args"`},
		{`{"id":"a","tool":"cat","env":{"A":1}}`, CodeWrongType, "a", `field "env`},
		{`{"id":"a","tool":"cat","timeout_ms":"5"}`, CodeWrongType, "a", `field "timeout_ms": got string, want an integer`},
		{`{"id":"a","tool":"cat","timeout_ms":1.5}`, CodeWrongType, "a", `timeout_ms`},
		{`{"id":"a","tool":"cat","stream":"yes"}`, CodeWrongType, "a", `want a boolean`},
		{`{"tool":"cat"}`, CodeMissingField, "", `field "id"`},
		{`{"id":"","tool":"cat"}`, CodeMissingField, "", `field "id"`},
		{`{"id":null,"tool":"cat"}`, CodeMissingField, "", `field "id"`},
		{`{"id":"a"}`, CodeMissingField, "a", `field "tool"`},
		{`{"id":"a","tool":"cat","timeout_ms":-1}`, CodeInvalidValue, "a", `negative`},
		{`{"id":"a","tool":"cat","max_output_bytes":-1}`, CodeInvalidValue, "a", `negative`},
		{`{"id":"a","tool":"cat","stdin":"%%%","stdin_encoding":"base64"}`, CodeInvalidValue, "a", `base64`},
		{`{"id":"a","tool":"cat","stdin":"x","stdin_encoding":"rot13"}`, CodeInvalidValue, "a", `rot13`},
		{`{"id":"a","tool":"cat","stdin_encoding":"base64"}`, CodeInvalidValue, "a", `without "stdin"`},
		{`{"type":"launch","id":"a","tool":"cat"}`, CodeUnknownType, "a", `"launch"`},
		{`{"type":"cancel"}`, CodeMissingField, "", `field "id"`},
		{`{"type":"cancel","id":"a","tool":"cat"}`, CodeInvalidValue, "a", `"tool": not allowed in a cancel message`},
		{`{"type":"ping","stream":true}`, CodeInvalidValue, "", `"stream"`},
		{`{"type":3}`, CodeWrongType, "", `field "type"`},
	}
	for _, c := range cases {
		m, err := DecodeMessage([]byte(c.line))
		if err == nil {
			t.Errorf("%s: accepted as %+v", c.line, m)
			continue
		}
		if err.Code != c.code || err.ID != c.id || !strings.Contains(err.Msg, c.mention) {
			t.Errorf("%s: got code %q id %q msg %q; want code %q id %q msg mentioning %q", c.line, err.Code, err.ID, err.Msg, c.code, c.id, c.mention)
		}
	}
}

func TestDecodeMessageValid(t *testing.T) {
	m, err := DecodeMessage([]byte(` {"id":"r1","tool":"cat","args":["-n"],"cwd":"sub","env":{"LANG":"C"},"stdin":"aGk=","stdin_encoding":"base64","timeout_ms":1500,"max_output_bytes":100,"stream":true} `))
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != TypeRun || m.ID != "r1" || !m.Stream {
		t.Fatalf("got %+v", m)
	}
	req := m.Request()
	if req.Tool != "cat" || len(req.Args) != 1 || req.Dir != "sub" || req.Env["LANG"] != "C" || req.Timeout != 1500*time.Millisecond || req.MaxOutputBytes != 100 {
		t.Fatalf("request %+v", req)
	}
	b, _ := io.ReadAll(req.Stdin)
	if string(b) != "hi" {
		t.Fatalf("stdin %q", b)
	}
	// Each Request reads the stdin from the start.
	b, _ = io.ReadAll(m.Request().Stdin)
	if string(b) != "hi" {
		t.Fatalf("stdin of a second Request %q", b)
	}
	m, err = DecodeMessage([]byte(`{"id":"r3","tool":"cat","stdin":"","stdin_encoding":"base64"}`))
	if err != nil {
		t.Fatal(err)
	}
	if req := m.Request(); req.Stdin == nil {
		t.Fatal("empty base64 stdin must be an empty reader, not nil")
	} else if b, _ = io.ReadAll(req.Stdin); len(b) != 0 {
		t.Fatalf("stdin %q", b)
	}
	m, err = DecodeMessage([]byte(`{"id":"r2","tool":"cat","stdin":"plain"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(m.Request().Stdin)
	if string(b) != "plain" {
		t.Fatalf("stdin %q", b)
	}
	if req := (&Message{Tool: "x"}).Request(); req.Stdin != nil {
		t.Fatal("no stdin must mean nil (the runtime gives /dev/null)")
	}
	for _, line := range []string{`{"type":"ping"}`, `{"type":"ping","id":"p"}`, `{"type":"stats"}`, `{"type":"policy","id":"x"}`, `{"type":"cancel","id":"r1"}`, `{"type":"run","id":"a","tool":"t","stream":false}`} {
		if _, err := DecodeMessage([]byte(line)); err != nil {
			t.Errorf("%s: %v", line, err)
		}
	}
}

func TestPartialRune(t *testing.T) {
	euro := "€" // 3 bytes
	cases := []struct {
		in   string
		want int
	}{
		{"abc", 0},
		{"", 0},
		{"a" + euro, 0},
		{"a" + euro[:1], 1},
		{"a" + euro[:2], 2},
		{"a\xff", 0}, // invalid, not partial: sent as is (base64)
		{"😀"[:3], 3},
	}
	for _, c := range cases {
		if got := partialRune([]byte(c.in)); got != c.want {
			t.Errorf("partialRune(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}
