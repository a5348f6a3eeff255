package serve

import (
	"encoding/base64"
	"unicode/utf8"

	"github.com/agentexec/agentexec"
)

// Output in result and chunk lines is text when it is valid UTF-8 and its JSON
// string form is no longer than its base64 form; otherwise base64. Text that is
// mostly escapes (NUL bytes, control characters: 6 bytes each in JSON) would make a
// line up to six times the output; so an output field of n bytes never takes more
// than base64's 4·⌈n/3⌉ (docs/protocol.md, "Line sizes").

// maxErrorText bounds the error text of a result (and a denial's object), which can
// quote the request's arguments: longer text is cut at a character boundary and
// ends with "…".
const maxErrorText = 4 << 10

// boundResult applies the encoding rule to rj's stdout and stderr and cuts its error
// texts to maxErrorText.
func boundResult(rj *agentexec.ResultJSON) {
	rj.Stdout, rj.StdoutEncoding = compactText(rj.Stdout, rj.StdoutEncoding)
	rj.Stderr, rj.StderrEncoding = compactText(rj.Stderr, rj.StderrEncoding)
	rj.Error = cutText(rj.Error, maxErrorText)
	if rj.Denied != nil {
		rj.Denied.Object = cutText(rj.Denied.Object, maxErrorText)
	}
}

// encodeOutput encodes a piece of output for a line: agentexec.EncodeOutput, then
// the rule above.
func encodeOutput(b []byte) (data, encoding string) {
	return compactText(agentexec.EncodeOutput(b))
}

// compactText re-encodes text output as base64 when its JSON form is the longer.
func compactText(s, encoding string) (string, string) {
	if encoding != "" || len(s) < 3 {
		return s, encoding
	}
	if jsonStringLen(s) <= base64.StdEncoding.EncodedLen(len(s)) {
		return s, encoding
	}
	return base64.StdEncoding.EncodeToString([]byte(s)), "base64"
}

// jsonStringLen is the length of valid UTF-8 s as encoding/json writes it inside
// the quotes, with HTML escaping off (as emit does).
func jsonStringLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < 0x20:
				n += 6 // \u00XX
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\u2028' || r == '\u2029':
			n += 6
		case r == utf8.RuneError && size == 1:
			n += 6 // \ufffd (not valid UTF-8: not reached for output, which is checked first)
		default:
			n += size
		}
		i += size
	}
	return n
}

// cutText cuts s to at most max bytes, at a character boundary, ending with "…".
func cutText(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
