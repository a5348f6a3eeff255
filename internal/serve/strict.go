package serve

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// The strict pass over an input line, run before encoding/json decodes it, for what
// encoding/json (v1) lets through: it matches field names case-insensitively, lets
// the last of duplicate keys win, and replaces invalid UTF-8 and lone surrogate
// escapes with U+FFFD. (encoding/json/v2 rejects all of these, but in Go 1.26 it is
// behind GOEXPERIMENT=jsonv2.) The pass walks the whole line once, allocating only
// for the keys of objects, and reports:
//
//   - a key that is a case variant of a protocol field ("ID", "Tool"): unknown_field;
//   - a key that appears twice in one object, compared after unescaping, so that
//     "tool" and "\u0074ool" are the same key: invalid_json, naming the key;
//   - invalid UTF-8, or a \uD800-\uDFFF escape that is not half of a surrogate pair,
//     in any string: invalid_value naming the field (invalid_json for a key).
//
// A syntax error is left to encoding/json, whose messages (with byte offsets) the
// protocol already documents; so is an unknown key that is no case variant.

// maxStrictDepth bounds the nesting the pass follows (encoding/json's own limit);
// deeper input is left to encoding/json, which rejects it.
const maxStrictDepth = 10000

// messageFields maps the lower-case form of each field name of Message to the name:
// the names the protocol defines.
var messageFields = func() map[string]string {
	m := map[string]string{}
	t := reflect.TypeFor[Message]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			m[strings.ToLower(name)] = name
		}
	}
	return m
}()

// syntaxErr is the panic value that ends the pass at input that is not JSON (the
// pass then defers to encoding/json); strictCheck recovers it.
type syntaxErr struct{}

type strictPass struct {
	b     []byte
	i     int
	depth int
	// path is where the pass is, for messages: keys and array indexes (the first
	// len(path) levels of plen).
	path [8]pathElem
	plen int

	id      []byte // the top-level "id" when it is a string, unique and valid
	idDup   bool
	problem *ProtocolError // the first problem found
}

type pathElem struct {
	key   []byte // an object member's key, unescaped
	index int    // an array element's index, when key is nil
}

// strictCheck runs the strict pass over line (a JSON object, surrounding space
// trimmed). It returns nil when the line has none of the problems above, or is not
// valid JSON (encoding/json then says why).
func strictCheck(line []byte) (perr *ProtocolError) {
	var p strictPass
	p.b = line
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(syntaxErr); !ok {
				panic(r)
			}
			perr = nil
		}
	}()
	p.space()
	p.object(true)
	if p.problem != nil && !p.idDup {
		p.problem.ID = string(p.id)
	}
	return p.problem
}

func (p *strictPass) fail() { panic(syntaxErr{}) }

// report keeps the first problem.
func (p *strictPass) report(code, format string, args ...any) {
	if p.problem == nil {
		p.problem = &ProtocolError{Code: code, Msg: fmt.Sprintf(format, args...)}
	}
}

// name is the current path, quoted: "stdin", "args[1]", "env.LANG".
func (p *strictPass) name() string {
	var sb strings.Builder
	for i, e := range p.path[:min(p.plen, len(p.path))] {
		switch {
		case e.key == nil:
			fmt.Fprintf(&sb, "[%d]", e.index)
		case i > 0:
			sb.WriteByte('.')
			sb.Write(e.key)
		default:
			sb.Write(e.key)
		}
	}
	if p.plen > len(p.path) {
		sb.WriteString("…")
	}
	return strconv.Quote(sb.String())
}

func (p *strictPass) push(e pathElem) {
	if p.plen < len(p.path) {
		p.path[p.plen] = e
	}
	p.plen++
}

func (p *strictPass) pop() { p.plen-- }

func (p *strictPass) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *strictPass) expect(c byte) {
	if p.i >= len(p.b) || p.b[p.i] != c {
		p.fail()
	}
	p.i++
}

// value checks one JSON value at p.path.
func (p *strictPass) value() {
	if p.i >= len(p.b) {
		p.fail()
	}
	switch c := p.b[p.i]; {
	case c == '{':
		p.object(false)
	case c == '[':
		p.array()
	case c == '"':
		p.str(false, false)
	case c == '-' || c >= '0' && c <= '9':
		p.number()
	default:
		for _, lit := range [...]string{"true", "false", "null"} {
			if len(p.b)-p.i >= len(lit) && string(p.b[p.i:p.i+len(lit)]) == lit {
				p.i += len(lit)
				return
			}
		}
		p.fail()
	}
}

func (p *strictPass) nest() {
	p.depth++
	if p.depth > maxStrictDepth {
		p.fail()
	}
}

// keySet finds duplicate keys: a list for the few keys of a request, a map past
// that (an object of many unknown keys must not cost quadratic time).
type keySet struct {
	n    int
	few  [16]pathElem // key and its byte offset (in index)
	many map[string]int
}

// add records key at offset at; it returns the offset of an earlier equal key.
func (k *keySet) add(key []byte, at int) (first int, dup bool) {
	if k.many != nil {
		if first, dup = k.many[string(key)]; !dup {
			k.many[string(key)] = at
		}
		return first, dup
	}
	for _, e := range k.few[:k.n] {
		if string(e.key) == string(key) {
			return e.index, true
		}
	}
	if k.n < len(k.few) {
		k.few[k.n] = pathElem{key: key, index: at}
		k.n++
		return 0, false
	}
	k.many = make(map[string]int, 2*len(k.few))
	for _, e := range k.few {
		k.many[string(e.key)] = e.index
	}
	k.many[string(key)] = at
	return 0, false
}

func (p *strictPass) object(top bool) {
	p.nest()
	p.expect('{')
	p.space()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		p.depth--
		return
	}
	var seen keySet
	for {
		p.space()
		at := p.i
		key, ok := p.str(true, true)
		p.push(pathElem{key: key})
		if ok {
			if first, dup := seen.add(key, at); dup {
				if top && string(key) == "id" {
					p.idDup = true
				}
				p.report(CodeInvalidJSON, "duplicate key %s at byte %d (first at byte %d): a key may appear once", p.name(), at, first)
			}
		}
		if top && ok {
			if _, exact := messageFields[string(key)]; !exact {
				if want, known := messageFields[strings.ToLower(string(key))]; known {
					p.report(CodeUnknownField, "unknown field %s: field names are case-sensitive (the protocol's is %s)", strconv.Quote(string(key)), strconv.Quote(want))
				}
			}
		}
		p.space()
		p.expect(':')
		p.space()
		if top && string(key) == "id" && p.i < len(p.b) && p.b[p.i] == '"' {
			if s, valid := p.str(false, true); valid {
				p.id = s
			}
		} else {
			p.value()
		}
		p.pop()
		p.space()
		if p.i >= len(p.b) {
			p.fail()
		}
		if p.b[p.i] == '}' {
			p.i++
			p.depth--
			return
		}
		p.expect(',')
	}
}

func (p *strictPass) array() {
	p.nest()
	p.expect('[')
	p.space()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		p.depth--
		return
	}
	p.push(pathElem{})
	for n := 0; ; n++ {
		if p.plen <= len(p.path) {
			p.path[p.plen-1].index = n
		}
		p.space()
		p.value()
		p.space()
		if p.i >= len(p.b) {
			p.fail()
		}
		if p.b[p.i] == ']' {
			p.i++
			p.depth--
			p.pop()
			return
		}
		p.expect(',')
	}
}

func (p *strictPass) number() {
	digits := func() int {
		n := 0
		for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.b[p.i] == '-' {
		p.i++
	}
	if p.i < len(p.b) && p.b[p.i] == '0' {
		p.i++
	} else if digits() == 0 {
		p.fail()
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if digits() == 0 {
			p.fail()
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			p.fail()
		}
	}
}

// str checks a string at p.i. With keep it returns the unescaped text (for keys and
// the id): a slice of the line when the string has no escape. ok is false when the
// string has a problem (reported). A key's problems are named by the object it is in
// (p.path), a value's by p.path.
func (p *strictPass) str(isKey, keep bool) (text []byte, ok bool) {
	start := p.i
	escaped, ok := p.scanString(start, isKey, nil)
	if !keep {
		return nil, ok
	}
	if !escaped {
		return p.b[start+1 : p.i-1], ok
	}
	end := p.i
	var buf []byte
	p.scanString(start, isKey, &buf)
	p.i = end
	return buf, ok
}

// scanString checks the string at start and leaves p.i after it; with out it
// appends the unescaped text to *out. It reports whether there was an escape.
func (p *strictPass) scanString(start int, isKey bool, out *[]byte) (escaped, ok bool) {
	p.i = start
	p.expect('"')
	ok = true
	bad := func(at int, what string) {
		if !ok {
			return
		}
		ok = false
		switch {
		case isKey && p.plen == 0:
			p.report(CodeInvalidJSON, "key at byte %d: %s", start, what)
		case isKey:
			p.report(CodeInvalidJSON, "key at byte %d in field %s: %s", start, p.name(), what)
		default:
			p.report(CodeInvalidValue, "field %s: %s at byte %d (JSON text is UTF-8; binary stdin goes as \"stdin_encoding\":\"base64\")", p.name(), what, at)
		}
	}
	put := func(b ...byte) {
		if out != nil {
			*out = append(*out, b...)
		}
	}
	putRune := func(r rune) {
		if out != nil {
			*out = utf8.AppendRune(*out, r)
		}
	}
	for {
		if p.i >= len(p.b) {
			p.fail()
		}
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return escaped, ok
		case c < 0x20:
			p.fail()
		case c == '\\':
			escaped = true
			at := p.i
			p.i++
			if p.i >= len(p.b) {
				p.fail()
			}
			e := p.b[p.i]
			p.i++
			switch e {
			case '"', '\\', '/':
				put(e)
			case 'b':
				put('\b')
			case 'f':
				put('\f')
			case 'n':
				put('\n')
			case 'r':
				put('\r')
			case 't':
				put('\t')
			case 'u':
				r := p.hex4()
				switch {
				case utf16.IsSurrogate(r) && r < 0xdc00:
					// A high surrogate: a low one must follow.
					if p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
						save := p.i
						p.i += 2
						if r2 := p.hex4(); r2 >= 0xdc00 && r2 <= 0xdfff {
							putRune(utf16.DecodeRune(r, r2))
							break
						}
						p.i = save
					}
					bad(at, fmt.Sprintf("escape %s is half of a surrogate pair, not a character", p.b[at:at+6]))
				case utf16.IsSurrogate(r):
					bad(at, fmt.Sprintf("escape %s is half of a surrogate pair, not a character", p.b[at:at+6]))
				default:
					putRune(r)
				}
			default:
				p.fail()
			}
		case c < utf8.RuneSelf:
			put(c)
			p.i++
		default:
			r, size := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && size <= 1 {
				bad(p.i, "invalid UTF-8")
				p.i++
				continue
			}
			put(p.b[p.i : p.i+size]...)
			p.i += size
		}
	}
}

func (p *strictPass) hex4() rune {
	if p.i+4 > len(p.b) {
		p.fail()
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			p.fail()
		}
		r = r<<4 | rune(v)
	}
	p.i += 4
	return r
}
