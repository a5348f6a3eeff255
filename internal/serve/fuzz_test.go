package serve

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

var knownCodes = map[string]bool{
	CodeInvalidJSON: true, CodeLineTooLong: true, CodeUnknownField: true, CodeWrongType: true, CodeMissingField: true,
	CodeInvalidValue: true, CodeUnknownType: true, CodeDuplicateID: true, CodeUnknownID: true, CodeShuttingDown: true,
}

// FuzzDecodeMessage feeds arbitrary lines to the request decoder. The seeds (every
// line of the decoder's tests) run in every `go test`; `make fuzz` explores from
// them. Properties: no panic; an error has a known code and a message; an accepted
// line is valid JSON whose keys are protocol field names exactly, each once, with
// every string valid UTF-8, and it decodes the same again.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range []string{
		`{"id":"r1","tool":"cat","args":["-n"],"cwd":"sub","env":{"LANG":"C"},"stdin":"aGk=","stdin_encoding":"base64","timeout_ms":1500,"max_output_bytes":100,"stream":true}`,
		`{"type":"cancel","id":"a"}`, `{"type":"ping"}`, `{"type":"stats","id":"s"}`, `{"type":"policy"}`,
		`{"ID":"a","TOOL":"cat"}`, `{"id":"b11","tool":"cat","id":"b12"}`, `{"id":"a","tool":"true","\u0074ool":"cat"}`,
		"{\"id\":\"a\",\"tool\":\"cat\",\"stdin\":\"x\xff\"}", `{"id":"a","tool":"cat","stdin":"\ud800"}`,
		`{"id":"a","tool":"cat","stdin":"\ud83d\ude00"}`, `{"id":"a","tool":"cat","env":{"A":"1","\u0041":"2"}}`,
		`{"id":"a","tool":"cat","x":{"y":[1,-2.5e+3,true,false,null,"z",{"k":"v","k":"w"}]}}`,
		`{"id":"a","tool":"cat"} x`, `[1]`, ``, `{`, `{"id":7}`, `{"id":"a","tool":"cat","timeout_ms":-1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, perr := DecodeMessage(line)
		if (m == nil) == (perr == nil) {
			t.Fatalf("message %v and error %v", m, perr)
		}
		if perr != nil {
			if !knownCodes[perr.Code] || perr.Msg == "" {
				t.Fatalf("error %+v", perr)
			}
			if !utf8.ValidString(perr.ID) {
				t.Fatalf("error id %q is not UTF-8", perr.ID)
			}
			return
		}
		if !json.Valid(line) {
			t.Fatalf("accepted invalid JSON %q", line)
		}
		// Keys exactly once, exact names, strings UTF-8: walk the tokens.
		dec := json.NewDecoder(bytes.NewReader(line))
		depth, keys := 0, map[string]bool{}
		expectKey := false
		for {
			tok, err := dec.Token()
			if err != nil {
				break
			}
			switch v := tok.(type) {
			case json.Delim:
				switch v {
				case '{':
					depth++
					expectKey = true
				case '[':
					depth++
				case '}', ']':
					depth--
					expectKey = depth >= 1 // approximate: inside an object again
				}
				continue
			case string:
				if depth == 1 && expectKey {
					if messageFields[v] != v || keys[v] {
						t.Fatalf("accepted key %q (twice: %v) in %q", v, keys[v], line)
					}
					keys[v] = true
				}
			}
			if depth == 1 {
				expectKey = !expectKey
			}
		}
		for _, s := range append(append([]string{m.Type, m.ID, m.Tool, m.Cwd, m.StdinEncoding}, m.Args...), envStrings(m.Env)...) {
			if !utf8.ValidString(s) {
				t.Fatalf("accepted invalid UTF-8 %q in %q", s, line)
			}
		}
		if m.Stdin != nil && !utf8.ValidString(*m.Stdin) {
			t.Fatalf("accepted invalid UTF-8 stdin in %q", line)
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, perr := DecodeMessage(again); perr != nil && m.Type == TypeRun {
			t.Fatalf("re-encoded %q: %v", again, perr)
		}
	})
}

func envStrings(env map[string]string) []string {
	var out []string
	for k, v := range env {
		out = append(out, k, v)
	}
	return out
}
