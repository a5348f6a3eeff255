package serve

import (
	"encoding/json"
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

// The strict pass: what encoding/json alone lets through. Each case's control is
// what encoding/json makes of the same line without it (the attack that succeeds).
func TestDecodeMessageStrict(t *testing.T) {
	cases := []struct {
		line, code, id, mention string
		// lenient is what plain encoding/json decodes the line to: the behaviour the
		// strict pass takes away.
		lenient func(m *Message) bool
	}{
		{`{"ID":"a","TOOL":"cat"}`, CodeUnknownField, "", `unknown field "ID": field names are case-sensitive (the protocol's is "id")`,
			func(m *Message) bool { return m.ID == "a" && m.Tool == "cat" }},
		{`{"id":"a","Tool":"cat"}`, CodeUnknownField, "a", `"Tool"`,
			func(m *Message) bool { return m.Tool == "cat" }},
		{`{"id":"b11","tool":"cat","id":"b12"}`, CodeInvalidJSON, "", `duplicate key "id" at byte 25 (first at byte 1)`,
			func(m *Message) bool { return m.ID == "b12" }},
		{`{"id":"a","tool":"true","\u0074ool":"cat"}`, CodeInvalidJSON, "a", `duplicate key "tool"`,
			func(m *Message) bool { return m.Tool == "cat" }},
		{`{"id":"a","tool":"true","tool":"cat"}`, CodeInvalidJSON, "a", `duplicate key "tool"`,
			func(m *Message) bool { return m.Tool == "cat" }},
		{`{"id":"a","tool":"cat","env":{"FOO":"1","F\u004fO":"2"}}`, CodeInvalidJSON, "a", `duplicate key "env.FOO"`,
			func(m *Message) bool { return m.Env["FOO"] == "2" }},
		{"{\"id\":\"a\",\"tool\":\"cat\",\"stdin\":\"x\xff\xfey\"}", CodeInvalidValue, "a", `field "stdin": invalid UTF-8 at byte 33`,
			func(m *Message) bool { return m.Stdin != nil && *m.Stdin == "x\ufffd\ufffdy" }},
		{"{\"id\":\"a\",\"tool\":\"cat\",\"args\":[\"ok\",\"\xc0\xaf\"]}", CodeInvalidValue, "a", `field "args[1]": invalid UTF-8`,
			func(m *Message) bool { return len(m.Args) == 2 && m.Args[1] == "\ufffd\ufffd" }},
		{"{\"id\":\"a\",\"tool\":\"cat\",\"env\":{\"LANG\":\"\xed\xa0\x80\"}}", CodeInvalidValue, "a", `field "env.LANG": invalid UTF-8`,
			func(m *Message) bool { return strings.Contains(m.Env["LANG"], "\ufffd") }},
		{`{"id":"a","tool":"cat","stdin":"\ud800"}`, CodeInvalidValue, "a", `field "stdin": escape \ud800 is half of a surrogate pair`,
			func(m *Message) bool { return m.Stdin != nil && *m.Stdin == "\ufffd" }},
		{`{"id":"a","tool":"cat","stdin":"\udc00\ud800x"}`, CodeInvalidValue, "a", `escape \udc00`,
			func(m *Message) bool { return m.Stdin != nil }},
		{"{\"id\":\"a\xff\",\"tool\":\"cat\"}", CodeInvalidValue, "", `field "id": invalid UTF-8`,
			func(m *Message) bool { return m.ID == "a\ufffd" }},
		{"{\"id\":\"a\",\"to\xffol\":\"cat\"}", CodeInvalidJSON, "a", `key at byte 10: invalid UTF-8`,
			nil},
		{`{"type":"ping","type":"stats"}`, CodeInvalidJSON, "", `duplicate key "type"`,
			func(m *Message) bool { return m.Type == "stats" }},
	}
	for _, c := range cases {
		m, err := DecodeMessage([]byte(c.line))
		if err == nil {
			t.Errorf("%s: accepted as %+v", c.line, m)
			continue
		}
		if err.Code != c.code || err.ID != c.id || !strings.Contains(err.Msg, c.mention) {
			t.Errorf("%q: got code %q id %q msg %q; want code %q id %q msg mentioning %q", c.line, err.Code, err.ID, err.Msg, c.code, c.id, c.mention)
		}
		if c.lenient == nil {
			continue
		}
		var lm Message
		if jerr := json.Unmarshal([]byte(c.line), &lm); jerr != nil || !c.lenient(&lm) {
			t.Errorf("%q: control: encoding/json alone gave %+v, %v; the case no longer shows what the strict pass stops", c.line, lm, jerr)
		}
	}
}

// Valid lines the strict pass must not refuse: escapes, surrogate pairs, nested
// values and every kind of JSON value (unknown fields are encoding/json's to refuse).
func TestDecodeMessageStrictAccepts(t *testing.T) {
	for _, line := range []string{
		`{"id":"a","tool":"cat","stdin":"\ud83d\ude00 \u00e9 \"q\" \\ \/ \b\f\n\r\t"}`,
		"{\"id\":\"a\",\"tool\":\"cat\",\"stdin\":\"h\u00e9llo \U0001F600\"}",
		`{ "id" : "a" , "tool" : "cat" , "args" : [ ] , "env" : { } , "timeout_ms" : 0 }`,
		`{"id":"a","tool":"cat","env":{"A":"1","a":"2"}}`,
	} {
		if _, err := DecodeMessage([]byte(line)); err != nil {
			t.Errorf("%s: %v", line, err)
		}
	}
	m, err := DecodeMessage([]byte(`{"id":"a","tool":"cat","stdin":"\ud83d\ude00"}`))
	if err != nil || *m.Stdin != "\U0001F600" {
		t.Fatalf("surrogate pair: %v %q", err, *m.Stdin)
	}
	// Unknown fields with values of every kind still get encoding/json's error.
	if _, err := DecodeMessage([]byte(`{"id":"a","tool":"cat","x":{"y":[1,-2.5e+3,true,false,null,"z"]}}`)); err == nil || err.Code != CodeUnknownField {
		t.Errorf("unknown nested field: %v", err)
	}
	// Syntax errors are encoding/json's, with its byte offsets.
	for _, line := range []string{`{"id":"a",}`, `{"id":"a","n":01}`, `{"id":"a","n":tru}`, `{"id":"\x"}`, `{"id":"a","n":1.}`, `{"id":"a` + "\t" + `"}`} {
		if _, err := DecodeMessage([]byte(line)); err == nil || err.Code != CodeInvalidJSON {
			t.Errorf("%q: %v, want invalid_json", line, err)
		}
	}
}
