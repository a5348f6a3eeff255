package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
)

// callArgs are a tool call's arguments, decoded and checked.
type callArgs struct {
	Args    []string
	Script  string // the shell tool's
	Stdin   *string
	Cwd     string
	Timeout time.Duration
}

// maxTimeoutMS bounds timeout_ms (about 24 days; it can only shorten the policy's
// limit anyway).
const maxTimeoutMS = math.MaxInt32

// inputSchema is the input schema of a policy tool (shell false) or of the shell
// tool. decodeArgs enforces exactly what it says.
func inputSchema(shell bool) *jsonschema.Schema {
	props := map[string]*jsonschema.Schema{
		"stdin": {Type: "string", Description: "Bytes fed to the tool's standard input (default: none, /dev/null)."},
		"cwd":   {Type: "string", Description: "Working directory, relative to the workspace (default: the workspace); it must stay inside the policy's roots."},
		"timeout_ms": {Type: "integer", Minimum: ptr(1.0), Maximum: ptr(float64(maxTimeoutMS)),
			Description: "Wall-clock limit in milliseconds; it can only shorten the policy's limit."},
	}
	req := "args"
	if shell {
		props["script"] = &jsonschema.Schema{Type: "string", Description: "The shell script, run as `sh -c SCRIPT`."}
		req = "script"
	} else {
		props["args"] = &jsonschema.Schema{Type: "array", Items: &jsonschema.Schema{Type: "string"},
			Description: "The arguments, without the program name; [] for none. No shell is involved: no globbing, quoting or pipes."}
	}
	return &jsonschema.Schema{
		Type:                 "object",
		Properties:           props,
		PropertyOrder:        []string{req, "stdin", "cwd", "timeout_ms"},
		Required:             []string{req},
		AdditionalProperties: &jsonschema.Schema{Not: &jsonschema.Schema{}},
	}
}

func ptr[T any](v T) *T { return &v }

// argError is a malformed argument: Field names it ("arguments.args[2]").
type argError struct {
	Field string
	Msg   string
}

func (e *argError) Error() string { return e.Field + ": " + e.Msg }

// decodeArgs decodes a call's arguments strictly: a JSON object with no unknown
// field, no key twice, each field of its type; the required field (args, or
// script for the shell tool) present. cwd must be relative and is returned
// cleaned; it may still leave the workspace ("../x"), which the runtime's check
// of the policy's roots then decides.
func decodeArgs(raw json.RawMessage, shell bool) (*callArgs, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	if raw[0] != '{' {
		return nil, &argError{"arguments", "want a JSON object, got " + jsonKind(raw)}
	}
	fields, err := objectFields(raw)
	if err != nil {
		return nil, err
	}
	var out callArgs
	required := "args"
	if shell {
		required = "script"
	}
	seen := false
	for _, f := range fields {
		name := "arguments." + f.key
		switch {
		case f.key == "args" && !shell:
			seen = true
			if out.Args, err = stringArray(name, f.val); err != nil {
				return nil, err
			}
		case f.key == "script" && shell:
			seen = true
			if out.Script, err = stringField(name, f.val); err != nil {
				return nil, err
			}
		case f.key == "stdin":
			s, err := stringField(name, f.val)
			if err != nil {
				return nil, err
			}
			out.Stdin = &s
		case f.key == "cwd":
			s, err := stringField(name, f.val)
			if err != nil {
				return nil, err
			}
			if filepath.IsAbs(s) {
				return nil, &argError{name, fmt.Sprintf("%q is absolute; give a path relative to the workspace", s)}
			}
			if s != "" {
				s = filepath.Clean(s)
			}
			out.Cwd = s
		case f.key == "timeout_ms":
			ms, err := intField(name, f.val)
			if err != nil {
				return nil, err
			}
			if ms < 1 || ms > maxTimeoutMS {
				return nil, &argError{name, fmt.Sprintf("%d is out of range; want 1 to %d", ms, maxTimeoutMS)}
			}
			out.Timeout = time.Duration(ms) * time.Millisecond
		default:
			want := "args, stdin, cwd, timeout_ms"
			if shell {
				want = "script, stdin, cwd, timeout_ms"
			}
			return nil, &argError{name, "unknown field; the fields are " + want}
		}
	}
	if !seen {
		return nil, &argError{"arguments." + required, "missing (required)"}
	}
	return &out, nil
}

type field struct {
	key string
	val json.RawMessage
}

// objectFields splits a JSON object into its fields in order; a key given twice
// is an error.
func objectFields(raw []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return nil, &argError{"arguments", "invalid JSON: " + err.Error()}
	}
	var out []field
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, &argError{"arguments", "invalid JSON: " + err.Error()}
		}
		key, _ := tok.(string)
		if seen[key] {
			return nil, &argError{"arguments." + key, "given twice"}
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, &argError{"arguments." + key, "invalid JSON: " + err.Error()}
		}
		out = append(out, field{key, v})
	}
	if _, err := dec.Token(); err != nil {
		return nil, &argError{"arguments", "invalid JSON: " + err.Error()}
	}
	if dec.More() {
		return nil, &argError{"arguments", "trailing data after the object"}
	}
	return out, nil
}

func jsonKind(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch v[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

func stringField(name string, v json.RawMessage) (string, error) {
	var s string
	if jsonKind(v) != "a string" || json.Unmarshal(v, &s) != nil {
		return "", &argError{name, "want a string, got " + jsonKind(v)}
	}
	if strings.IndexByte(s, 0) >= 0 {
		return "", &argError{name, "contains a NUL byte"}
	}
	return s, nil
}

func stringArray(name string, v json.RawMessage) ([]string, error) {
	var elems []json.RawMessage
	if jsonKind(v) != "an array" || json.Unmarshal(v, &elems) != nil {
		return nil, &argError{name, "want an array of strings, got " + jsonKind(v)}
	}
	out := make([]string, len(elems))
	for i, e := range elems {
		s, err := stringField(fmt.Sprintf("%s[%d]", name, i), e)
		if err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

func intField(name string, v json.RawMessage) (int64, error) {
	if jsonKind(v) != "a number" {
		return 0, &argError{name, "want an integer, got " + jsonKind(v)}
	}
	text := string(bytes.TrimSpace(v))
	if n, err := strconv.ParseInt(text, 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > maxTimeoutMS*2 {
		return 0, &argError{name, fmt.Sprintf("want an integer, got %s", text)}
	}
	return int64(f), nil
}

// errorsAsArg reports whether err is a malformed argument.
func errorsAsArg(err error) (*argError, bool) {
	var ae *argError
	ok := errors.As(err, &ae)
	return ae, ok
}
