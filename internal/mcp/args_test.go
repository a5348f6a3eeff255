package mcp

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDecodeArgs(t *testing.T) {
	for _, tc := range []struct {
		in      string
		shell   bool
		field   string // the field the error names; "" for no error
		wantMsg string
	}{
		{`{"args":[]}`, false, "", ""},
		{`{"args":["-n","x"],"stdin":"in","cwd":"sub/dir","timeout_ms":1500}`, false, "", ""},
		{`{"args":[],"timeout_ms":1e3}`, false, "", ""},
		{`{"script":"echo hi"}`, true, "", ""},
		{``, false, "arguments.args", "missing"},
		{`null`, false, "arguments.args", "missing"},
		{`{}`, false, "arguments.args", "missing"},
		{`{}`, true, "arguments.script", "missing"},
		{`[]`, false, "arguments", "want a JSON object, got an array"},
		{`"x"`, false, "arguments", "got a string"},
		{`{"args":"-n"}`, false, "arguments.args", "want an array of strings, got a string"},
		{`{"args":["a",1]}`, false, "arguments.args[1]", "want a string, got a number"},
		{`{"args":["a",null]}`, false, "arguments.args[1]", "got null"},
		{`{"args":["a\u0000b"]}`, false, "arguments.args[0]", "NUL"},
		{`{"args":[],"stdin":5}`, false, "arguments.stdin", "want a string, got a number"},
		{`{"args":[],"cwd":true}`, false, "arguments.cwd", "want a string, got a boolean"},
		{`{"args":[],"cwd":"/etc"}`, false, "arguments.cwd", "absolute"},
		{`{"args":[],"timeout_ms":"5"}`, false, "arguments.timeout_ms", "want an integer, got a string"},
		{`{"args":[],"timeout_ms":1.5}`, false, "arguments.timeout_ms", "want an integer, got 1.5"},
		{`{"args":[],"timeout_ms":0}`, false, "arguments.timeout_ms", "out of range"},
		{`{"args":[],"timeout_ms":-3}`, false, "arguments.timeout_ms", "out of range"},
		{`{"args":[],"timeout_ms":99999999999}`, false, "arguments.timeout_ms", "out of range"},
		{`{"args":[],"env":{}}`, false, "arguments.env", "unknown field"},
		{`{"args":[],"script":"x"}`, false, "arguments.script", "unknown field"},
		{`{"script":"x","args":[]}`, true, "arguments.args", "unknown field"},
		{`{"args":[],"args":["x"]}`, false, "arguments.args", "given twice"},
		{`{"args":[]`, false, "arguments", "invalid JSON"},
		{`{"args":[]} {}`, false, "arguments", "trailing"},
	} {
		a, err := decodeArgs(json.RawMessage(tc.in), tc.shell)
		if tc.field == "" {
			if err != nil {
				t.Errorf("decodeArgs(%s): %v", tc.in, err)
			} else if a == nil {
				t.Errorf("decodeArgs(%s): nil args", tc.in)
			}
			continue
		}
		ae, ok := errorsAsArg(err)
		if !ok {
			t.Errorf("decodeArgs(%s) = %v, want an error naming %s", tc.in, err, tc.field)
			continue
		}
		if ae.Field != tc.field || !strings.Contains(ae.Msg, tc.wantMsg) {
			t.Errorf("decodeArgs(%s) = %q, want field %s and %q", tc.in, err, tc.field, tc.wantMsg)
		}
	}
}

func TestDecodeArgsValues(t *testing.T) {
	a, err := decodeArgs(json.RawMessage(`{"args":["-n","x y"],"stdin":"","cwd":"./a/../b/","timeout_ms":1500}`), false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Args, []string{"-n", "x y"}) || a.Stdin == nil || *a.Stdin != "" || a.Cwd != "b" || a.Timeout != 1500*time.Millisecond {
		t.Fatalf("decoded %+v", a)
	}
	a, err = decodeArgs(json.RawMessage(`{"script":"echo 1 | wc -l"}`), true)
	if err != nil || a.Script != "echo 1 | wc -l" || a.Stdin != nil {
		t.Fatalf("decoded %+v, %v", a, err)
	}
}

// The input schema says what decodeArgs enforces.
func TestInputSchema(t *testing.T) {
	for _, shell := range []bool{false, true} {
		b, err := json.Marshal(inputSchema(shell))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		req := "args"
		if shell {
			req = "script"
		}
		if m["type"] != "object" || m["additionalProperties"] != false {
			t.Errorf("schema %s: want an object with additionalProperties false", b)
		}
		if r, _ := m["required"].([]any); len(r) != 1 || r[0] != req {
			t.Errorf("schema %s: want required [%s]", b, req)
		}
		props, _ := m["properties"].(map[string]any)
		for _, p := range []string{req, "stdin", "cwd", "timeout_ms"} {
			if props[p] == nil {
				t.Errorf("schema %s: no property %s", b, p)
			}
		}
		if len(props) != 4 {
			t.Errorf("schema %s: want 4 properties", b)
		}
	}
}
