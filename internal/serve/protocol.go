package serve

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"

	"github.com/agentexec/agentexec"
)

// Message types: the "type" field of input lines.
const (
	TypeRun    = "run" // the default when "type" is absent
	TypeCancel = "cancel"
	TypePing   = "ping"
	TypeStats  = "stats"
	TypePolicy = "policy"
)

// Output line types, besides "result" (agentexec.ResultJSON).
const (
	TypeStdout = "stdout"
	TypeStderr = "stderr"
	TypeError  = "error"
	TypePong   = "pong"
)

// Error codes of error lines.
const (
	CodeInvalidJSON  = "invalid_json"  // not a JSON object, or trailing data after it
	CodeLineTooLong  = "line_too_long" // over --max-line-bytes; the line was skipped
	CodeUnknownField = "unknown_field" // a field the protocol does not define
	CodeWrongType    = "wrong_type"    // a field of the wrong JSON type
	CodeMissingField = "missing_field" // id (or, for run, tool) absent or empty
	CodeInvalidValue = "invalid_value" // a negative number, a bad encoding, a field the type does not take
	CodeUnknownType  = "unknown_type"  // "type" is none of run, cancel, ping, stats, policy
	CodeDuplicateID  = "duplicate_id"  // a request with this id is still in flight
	CodeUnknownID    = "unknown_id"    // cancel of an id that is not in flight
	CodeShuttingDown = "shutting_down" // the server stopped accepting requests
)

// Message is one input line: a run request or a control message.
type Message struct {
	// Type is "run" (default), "cancel", "ping", "stats" or "policy".
	Type string `json:"type"`
	// ID names a run request (required, unique among requests in flight), the request
	// a cancel is for (required), or is echoed in the reply to ping, stats and policy.
	ID string `json:"id"`

	Tool           string            `json:"tool"`
	Args           []string          `json:"args"`
	Cwd            string            `json:"cwd"`
	Env            map[string]string `json:"env"`
	Stdin          *string           `json:"stdin"`
	StdinEncoding  string            `json:"stdin_encoding"`
	TimeoutMS      int64             `json:"timeout_ms"`
	MaxOutputBytes int64             `json:"max_output_bytes"`
	Stream         bool              `json:"stream"`

	// stdinBase64 is Stdin decoded, set by validate when StdinEncoding is "base64".
	stdinBase64 []byte
}

// ProtocolError is the problem with one input line; the server answers it with an
// ErrorLine.
type ProtocolError struct {
	Code string
	ID   string // the line's id, when it could be read
	Msg  string
}

func (e *ProtocolError) Error() string { return e.Code + ": " + e.Msg }

// ErrorLine answers an input line the server could not accept.
type ErrorLine struct {
	Type  string `json:"type"` // "error"
	Line  int64  `json:"line"` // the input line number, from 1
	ID    string `json:"id,omitempty"`
	Code  string `json:"code"`
	Error string `json:"error"`
}

// Chunk is a piece of a streamed request's output.
type Chunk struct {
	Type     string `json:"type"` // "stdout" or "stderr"
	ID       string `json:"id"`
	Data     string `json:"data"`
	Encoding string `json:"encoding,omitempty"` // "base64" when Data is not UTF-8 text
}

// Pong answers ping.
type Pong struct {
	Type    string `json:"type"` // "pong"
	ID      string `json:"id,omitempty"`
	Version string `json:"version"`
}

// StatsLine answers stats.
type StatsLine struct {
	Type string `json:"type"` // "stats"
	ID   string `json:"id,omitempty"`
	// Server counters, one consistent snapshot: requests = results + in_flight,
	// in_flight = running + queued, lines = requests + errors + controls, results =
	// the sum of statuses.
	Requests    uint64 `json:"requests"`     // run requests accepted
	Results     uint64 `json:"results"`      // results written (or about to be)
	Errors      uint64 `json:"errors"`       // error lines written
	InFlight    int64  `json:"in_flight"`    // accepted, no result yet (queued + running)
	Running     int64  `json:"running"`      // holding one of the max-inflight slots
	Queued      int64  `json:"queued"`       // waiting for a slot
	MaxInflight int    `json:"max_inflight"` // the bound on running
	UptimeMS    int64  `json:"uptime_ms"`
	Lines       uint64 `json:"lines"`    // input lines read, this stats line included
	Controls    uint64 `json:"controls"` // ping, stats and policy answered, cancels applied
	// Statuses counts results by status: ok, denied, error, timeout, killed.
	Statuses map[string]uint64 `json:"statuses"`
	// Runtime counters.
	Launches         uint64 `json:"launches"`
	LaunchFailures   uint64 `json:"launch_failures"`
	Denied           uint64 `json:"denied"`
	LaunchesInFlight int64  `json:"launches_in_flight"`
	// LaunchesQueued counts requests the runtime holds waiting for a slot of
	// their profile (its concurrency); they are running here, not launched yet.
	LaunchesQueued      int64  `json:"launches_queued"`
	EgressAllowed       uint64 `json:"egress_allowed"` // connections the egress proxy let through
	EgressDenied        uint64 `json:"egress_denied"`  // connections it refused
	TemplateHits        uint64 `json:"template_hits"`
	TemplatesCreated    uint64 `json:"templates_created"`
	TemplateRecreations uint64 `json:"template_recreations"`
	SpawnerRestarts     uint64 `json:"spawner_restarts"`
	// Backends counts results by the backend that launched them.
	Backends map[string]uint64 `json:"backends"`
}

// PolicyLine answers policy: what this server enforces, as `agentexec check --json`.
type PolicyLine struct {
	Type   string            `json:"type"` // "policy"
	ID     string            `json:"id,omitempty"`
	Report *agentexec.Report `json:"report"`
}

// DecodeMessage parses and validates one input line strictly: one JSON object,
// nothing after it, only the protocol's fields (names matched case-sensitively), each
// at most once and of its type, every string valid UTF-8.
func DecodeMessage(line []byte) (*Message, *ProtocolError) {
	var m Message
	// JSON whitespace only (RFC 8259): not \f, \v or Unicode spaces, which
	// bytes.TrimSpace would drop and a JSON parser refuses.
	trimmed := bytes.Trim(line, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, &ProtocolError{Code: CodeInvalidJSON, Msg: "empty line, want a JSON object"}
	}
	if trimmed[0] != '{' {
		// No id to report: JSON that does not start with '{' is not an object.
		return nil, &ProtocolError{Code: CodeInvalidJSON, Msg: "not a JSON object"}
	}
	// Case variants of field names, duplicate keys, invalid UTF-8 (strict.go).
	if perr := strictCheck(trimmed); perr != nil {
		return nil, perr
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, decodeError(err, trimmed)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &ProtocolError{Code: CodeInvalidJSON, ID: m.ID, Msg: fmt.Sprintf("trailing data after the JSON object at byte %d", dec.InputOffset())}
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Message) validate() *ProtocolError {
	bad := func(code, format string, args ...any) *ProtocolError {
		return &ProtocolError{Code: code, ID: m.ID, Msg: fmt.Sprintf(format, args...)}
	}
	switch m.Type {
	case "", TypeRun:
		m.Type = TypeRun
		if m.ID == "" {
			return bad(CodeMissingField, `field "id": required, a non-empty string`)
		}
		if m.Tool == "" {
			return bad(CodeMissingField, `field "tool": required, a non-empty string`)
		}
		if m.TimeoutMS < 0 {
			return bad(CodeInvalidValue, `field "timeout_ms": %d is negative`, m.TimeoutMS)
		}
		if m.MaxOutputBytes < 0 {
			return bad(CodeInvalidValue, `field "max_output_bytes": %d is negative`, m.MaxOutputBytes)
		}
		switch m.StdinEncoding {
		case "", "text", "base64":
		default:
			return bad(CodeInvalidValue, `field "stdin_encoding": %q, want "text" or "base64"`, m.StdinEncoding)
		}
		if m.StdinEncoding != "" && m.Stdin == nil {
			return bad(CodeInvalidValue, `field "stdin_encoding" without "stdin"`)
		}
		if m.StdinEncoding == "base64" {
			data, err := base64.StdEncoding.DecodeString(*m.Stdin)
			if err != nil {
				return bad(CodeInvalidValue, `field "stdin": invalid base64: %v`, err)
			}
			m.stdinBase64 = data // for Request
		}
		return nil
	case TypeCancel, TypePing, TypeStats, TypePolicy:
		if m.Type == TypeCancel && m.ID == "" {
			return bad(CodeMissingField, `field "id": required in a cancel message (the id of the request to cancel)`)
		}
		if f := m.runFieldSet(); f != "" {
			return bad(CodeInvalidValue, "field %q: not allowed in a %s message", f, m.Type)
		}
		return nil
	default:
		return bad(CodeUnknownType, `field "type": unknown message type %q, want run, cancel, ping, stats or policy`, m.Type)
	}
}

// runFieldSet names a run-only field that is set, or returns "".
func (m *Message) runFieldSet() string {
	switch {
	case m.Tool != "":
		return "tool"
	case m.Args != nil:
		return "args"
	case m.Cwd != "":
		return "cwd"
	case m.Env != nil:
		return "env"
	case m.Stdin != nil:
		return "stdin"
	case m.StdinEncoding != "":
		return "stdin_encoding"
	case m.TimeoutMS != 0:
		return "timeout_ms"
	case m.MaxOutputBytes != 0:
		return "max_output_bytes"
	case m.Stream:
		return "stream"
	}
	return ""
}

// Request converts a run message validated by DecodeMessage into a library request.
func (m *Message) Request() agentexec.Request {
	req := agentexec.Request{
		Tool: m.Tool, Args: m.Args, Dir: m.Cwd, Env: m.Env,
		Timeout:        time.Duration(m.TimeoutMS) * time.Millisecond,
		MaxOutputBytes: m.MaxOutputBytes,
	}
	if m.Stdin != nil {
		var data []byte
		if m.StdinEncoding == "base64" {
			data = m.stdinBase64 // decoded (and checked) by validate
		} else {
			data = []byte(*m.Stdin)
		}
		req.Stdin = bytes.NewReader(data)
	}
	return req
}

func decodeError(err error, line []byte) *ProtocolError {
	id := probeID(line)
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return &ProtocolError{Code: CodeInvalidJSON, ID: id, Msg: fmt.Sprintf("invalid JSON at byte %d: %v", syn.Offset, err)}
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return &ProtocolError{Code: CodeInvalidJSON, ID: id, Msg: "invalid JSON: unexpected end of line"}
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(top level)"
		}
		return &ProtocolError{Code: CodeWrongType, ID: id, Msg: fmt.Sprintf("field %q: got %s, want %s", field, typ.Value, jsonKind(typ.Type))}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for DisallowUnknownFields.
		name := strings.TrimPrefix(err.Error(), "json: unknown field ")
		return &ProtocolError{Code: CodeUnknownField, ID: id, Msg: "unknown field " + name}
	default:
		return &ProtocolError{Code: CodeInvalidJSON, ID: id, Msg: err.Error()}
	}
}

// probeID returns the line's "id" when the line is a JSON object whose id is a
// string, so that an error line can name the request it refuses.
func probeID(line []byte) string {
	var p struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(line, &p) != nil {
		return ""
	}
	s, _ := p.ID.(string)
	return s
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint, reflect.Uint64:
		return "an integer"
	case reflect.Slice:
		return "an array of " + strings.TrimPrefix(strings.TrimPrefix(jsonKind(t.Elem()), "a "), "an ") + "s"
	case reflect.Map:
		return "an object of " + strings.TrimPrefix(strings.TrimPrefix(jsonKind(t.Elem()), "a "), "an ") + "s"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	case reflect.Struct:
		return "an object"
	}
	return t.String()
}
