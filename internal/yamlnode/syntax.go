package yamlnode

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// yaml.v3 reports a syntax error with the line of the construct it was reading
// (a block mapping's first key, a flow collection's bracket), 0-based for parser
// errors, and never a column: "yaml: line 2: did not find expected key" for a bad
// indent on line 5. locateSyntax finds the offending line and column itself, by a
// scan of the bytes: a small lexer that knows quotes, flow brackets, comments and
// block scalars, and a checker of the block structure (indentation levels, keys,
// list items). It runs only after yaml.v3 has refused the file, so it never decides
// whether a file is valid; it only says where yaml.v3's complaint points. When it
// finds nothing that fits yaml.v3's message, the caller keeps yaml.v3's line.

// syntaxPos is a located problem: 1-based line and column, and a note that says
// what is wrong there in the user's terms ("" to keep yaml.v3's message alone).
type syntaxPos struct {
	line, col int
	note      string
}

// scanLine is one line as the lexer saw it.
type scanLine struct {
	n      int    // 1-based line number
	text   string // the line without its comment, trailing blanks cut
	indent int    // leading spaces
	// tab is the 0-based column of a tab in the leading whitespace, -1 if none.
	tab int
	// cont marks a line that begins inside a quoted scalar, a flow collection or a
	// block scalar: it has no block structure of its own.
	cont bool
	// colons are the 0-based columns of mapping indicators (": " or a ':' ending
	// the line) outside quotes, in block context.
	colons []int
	// inFlow marks a line whose content opens a flow collection that it does not close.
	inFlow bool
}

// lexResult is what the lexer found in the whole file.
type lexResult struct {
	lines []scanLine
	// quote is the opening quote of a quoted scalar that never closes (line 0: none).
	quote syntaxPos
	// flow is the innermost flow bracket left open at the end, or the opener a
	// wrong closing bracket met (line 0: none).
	flow syntaxPos
	// stray is a closing bracket that closes nothing (line 0: none).
	stray syntaxPos
}

// tokenStart reports whether a scalar, quote or flow collection may begin at s[j]:
// at the start of the content, or after an indicator (": ", "- ", "? ", "[", "{",
// ","), possibly with an anchor or tag between.
func tokenStart(s string, j int) bool {
	k := j - 1
	for k >= 0 && (s[k] == ' ' || s[k] == '\t') {
		k--
	}
	if k < 0 {
		return true
	}
	if k < j-1 {
		// After blanks: an anchor or a tag word may sit between the indicator and us.
		w := k
		for w >= 0 && s[w] != ' ' && s[w] != '\t' {
			w--
		}
		if word := s[w+1 : k+1]; word != "" && (word[0] == '&' || word[0] == '!') {
			return tokenStart(s, w+1)
		}
	}
	switch s[k] {
	case ':', '-', '?', ',', '[', '{':
		return true
	}
	return false
}

// yamlLines makes YAML's line breaks (CR LF, CR, LF) one LF each, as yaml.v3 counts lines.
var yamlLines = strings.NewReplacer("\r\n", "\n", "\r", "\n")

// lex scans data line by line.
func lex(data []byte) lexResult {
	var res lexResult
	raw := strings.Split(yamlLines.Replace(string(data)), "\n")
	var (
		quote      byte // the open quote's character, 0 outside quotes
		quoteAt    syntaxPos
		flow       []syntaxPos // open brackets
		flowCh     []byte
		block      = false // inside a block scalar
		blockMin   int     // its content must be indented more than this
		blockInd   = -1    // its content's indentation, once known
		pendingBlk = false // the line just scanned ends with a block scalar indicator
		pendingMin int
	)
	for i, s := range raw {
		ln := scanLine{n: i + 1, tab: -1}
		ind := 0
		for ind < len(s) && s[ind] == ' ' {
			ind++
		}
		blank := strings.TrimSpace(s) == ""
		if pendingBlk {
			block, blockMin, blockInd, pendingBlk = true, pendingMin, -1, false
		}
		if block {
			switch {
			case blank:
				ln.cont = true
			case blockInd < 0 && ind > blockMin:
				blockInd, ln.cont = ind, true
			case blockInd >= 0 && ind >= blockInd:
				ln.cont = true
			default:
				block = false
			}
			if ln.cont {
				res.lines = append(res.lines, ln)
				continue
			}
		}
		ln.cont = quote != 0 || len(flow) > 0
		ln.indent = ind
		if !ln.cont {
			for k := 0; k < len(s) && (s[k] == ' ' || s[k] == '\t'); k++ {
				if s[k] == '\t' && !blank {
					ln.tab = k
					break
				}
			}
		}
		end := len(s)
		startFlow := len(flow)
		for j := 0; j < len(s); j++ {
			c := s[j]
			switch quote {
			case '\'':
				if c == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						j++
					} else {
						quote = 0
					}
				}
				continue
			case '"':
				if c == '\\' {
					j++
				} else if c == '"' {
					quote = 0
				}
				continue
			}
			switch {
			case c == '#' && (j == 0 || s[j-1] == ' ' || s[j-1] == '\t'):
				end = j
				j = len(s)
			case (c == '\'' || c == '"') && tokenStart(s, j):
				quote, quoteAt = c, syntaxPos{line: i + 1, col: j + 1}
			case (c == '[' || c == '{') && (tokenStart(s, j) || len(flow) > 0):
				flow = append(flow, syntaxPos{line: i + 1, col: j + 1})
				flowCh = append(flowCh, c)
			case c == ']' || c == '}':
				open := byte('[')
				if c == '}' {
					open = '{'
				}
				switch {
				case len(flow) > 0:
					if flowCh[len(flowCh)-1] != open && res.flow.line == 0 {
						res.flow = flow[len(flow)-1]
						res.flow.note = fmt.Sprintf("the %q here is closed by a %q at %d:%d", flowCh[len(flowCh)-1], c, i+1, j+1)
					}
					flow, flowCh = flow[:len(flow)-1], flowCh[:len(flowCh)-1]
				case res.stray.line == 0 && (tokenStart(s, j) || prevNonBlank(s, j) == ']' || prevNonBlank(s, j) == '}'):
					res.stray = syntaxPos{line: i + 1, col: j + 1, note: fmt.Sprintf("this %q closes nothing", c)}
				}
			case c == ':' && len(flow) == 0 && (j+1 == len(s) || s[j+1] == ' ' || s[j+1] == '\t'):
				ln.colons = append(ln.colons, j)
			case (c == '|' || c == '>') && len(flow) == 0 && tokenStart(s, j):
				rest := strings.TrimLeft(s[j+1:], "0123456789+-")
				if r := strings.TrimSpace(rest); r == "" || strings.HasPrefix(r, "#") {
					pendingBlk, pendingMin = true, ind
					if it := seqKeyIndent(s); it > ind && len(ln.colons) > 0 { // "- key: |"
						pendingMin = it
					}
				}
				j = len(s)
			}
		}
		ln.text = strings.TrimRight(s[:end], " \t")
		ln.inFlow = len(flow) > startFlow
		res.lines = append(res.lines, ln)
	}
	if quote != 0 {
		res.quote = quoteAt
		res.quote.note = "the quoted string that begins here is never closed"
	}
	if len(flow) > 0 && res.flow.line == 0 {
		res.flow = flow[len(flow)-1]
		res.flow.note = fmt.Sprintf("the %q here is never closed", flowCh[len(flowCh)-1])
	}
	return res
}

func prevNonBlank(s string, j int) byte {
	for k := j - 1; k >= 0; k-- {
		if s[k] != ' ' && s[k] != '\t' {
			return s[k]
		}
	}
	return 0
}

// seqKeyIndent is the column of the key in a "- key: …" line, -1 for other lines.
func seqKeyIndent(s string) int {
	t := strings.TrimLeft(s, " ")
	if !strings.HasPrefix(t, "- ") {
		return -1
	}
	k := len(s) - len(t) + 1
	for k < len(s) && s[k] == ' ' {
		k++
	}
	return k
}

// level is an open block collection: a mapping or a sequence at an indentation.
type level struct {
	indent int
	seq    bool
	line   int
}

// checkStructure walks the block structure of the lines and returns the first
// line that breaks it (line 0: none found).
func checkStructure(lines []scanLine) syntaxPos {
	var stack []level
	open := -1 // the previous line opened a nested block below this indentation
	// plain: the previous line's value is a plain scalar that a more indented line
	// would continue.
	var plain struct {
		on       bool
		min      int
		line, co int
	}
	for _, ln := range lines {
		t := strings.TrimSpace(ln.text)
		if ln.cont || t == "" {
			continue
		}
		if ln.tab >= 0 {
			return syntaxPos{line: ln.n, col: ln.tab + 1, note: "a tab in the indentation: YAML indents with spaces only"}
		}
		if t == "---" || strings.HasPrefix(t, "--- ") || t == "..." || (ln.indent == 0 && strings.HasPrefix(t, "%")) {
			stack, open, plain.on = nil, -1, false
			continue
		}
		ind := ln.indent
		isSeq := t == "-" || strings.HasPrefix(t, "- ")
		if plain.on && ind > plain.min {
			if len(ln.colons) > 0 {
				return syntaxPos{line: ln.n, col: ln.colons[0] + 1,
					note: fmt.Sprintf("a more indented line continues the value that begins at %d:%d, where a ':' cannot follow; indent it as a key of its own, or check the line above for a missing ':'", plain.line, plain.co)}
			}
			continue // part of a multi-line plain scalar
		}
		plain.on = false
		pushed := false
		switch {
		case len(stack) == 0:
			stack = append(stack, level{ind, isSeq, ln.n})
			pushed = true
		case open >= 0 && ind > open:
			stack = append(stack, level{ind, isSeq, ln.n})
			pushed = true
		case open >= 0 && ind == open && isSeq && !stack[len(stack)-1].seq && stack[len(stack)-1].indent == ind:
			stack = append(stack, level{ind, true, ln.n}) // a list at its key's indentation
			pushed = true
		default:
			var popped *level
			for len(stack) > 0 && stack[len(stack)-1].indent > ind {
				l := stack[len(stack)-1]
				popped = &l
				stack = stack[:len(stack)-1]
			}
			// A list at its key's indentation ends at the next key.
			if n := len(stack); n >= 2 && !isSeq && stack[n-1].seq && stack[n-2].indent == ind && stack[n-1].indent == ind {
				stack = stack[:n-1]
			}
			if len(stack) == 0 || stack[len(stack)-1].indent < ind {
				note := fmt.Sprintf("this line is indented %s, which matches no enclosing block", spaces(ind))
				if len(stack) > 0 && popped != nil {
					note += fmt.Sprintf(" (they are indented %d and %s)", popped.indent, spaces(stack[len(stack)-1].indent))
				} else if len(stack) > 0 {
					note += fmt.Sprintf(" (it is indented %s)", spaces(stack[len(stack)-1].indent))
				}
				return syntaxPos{line: ln.n, col: ind + 1, note: note}
			}
			top := stack[len(stack)-1]
			if top.seq && !isSeq {
				return syntaxPos{line: ln.n, col: ind + 1, note: fmt.Sprintf("the list that begins at line %d continues at this indentation: expected a '- ' item", top.line)}
			}
			if !top.seq && isSeq {
				return syntaxPos{line: ln.n, col: ind + 1, note: fmt.Sprintf("a '- ' item where the mapping that begins at line %d expects a key", top.line)}
			}
		}
		open = -1
		// The line's own content: "- " items, then "key: value".
		s := ln.text
		j := ind
		for j < len(s) && s[j] == '-' && (j+1 == len(s) || s[j+1] == ' ') {
			j++
			for j < len(s) && s[j] == ' ' {
				j++
			}
			if j < len(s) && s[j] == '-' && (j+1 == len(s) || s[j+1] == ' ') {
				stack = append(stack, level{j, true, ln.n})
			}
		}
		rest := s[j:]
		var colons []int
		for _, c := range ln.colons {
			if c >= j {
				colons = append(colons, c)
			}
		}
		if j > ind && len(colons) > 0 {
			stack = append(stack, level{j, false, ln.n}) // "- key: value": a mapping in the item
		}
		if emptyValue(rest) {
			open = ind // "- " alone: the item's content is indented more than the dash
			continue
		}
		if len(colons) == 0 {
			if j > ind || ln.inFlow || strings.HasPrefix(rest, "?") {
				plain.on, plain.min, plain.line, plain.co = !ln.inFlow && plainStart(rest), ind, ln.n, j+1
				continue
			}
			if pushed && len(stack) > 1 {
				// A scalar below "key:": the key's value, not a mapping.
				stack = stack[:len(stack)-1]
				plain.on, plain.min, plain.line, plain.co = plainStart(rest), open0(stack), ln.n, j+1
				continue
			}
			if pushed && len(stack) == 1 {
				stack = nil // a scalar document
				continue
			}
			return syntaxPos{line: ln.n, col: j + 1, note: "a key without ':' in a mapping"}
		}
		key := colons[0]
		value := strings.TrimLeft(s[key+1:], " ")
		vcol := len(s) - len(value)
		if len(colons) > 1 && plainStart(value) {
			return syntaxPos{line: ln.n, col: colons[1] + 1,
				note: fmt.Sprintf("a second ': ' in the value that begins at %d:%d; quote the value if the ':' belongs to it", ln.n, vcol+1)}
		}
		if emptyValue(value) {
			open = j
			continue
		}
		if plainStart(value) && !ln.inFlow {
			plain.on, plain.min, plain.line, plain.co = true, j, ln.n, vcol+1
		}
	}
	return syntaxPos{}
}

func spaces(n int) string {
	if n == 1 {
		return "1 space"
	}
	return strconv.Itoa(n) + " spaces"
}

// open0 is the indentation a continuation line must exceed: the innermost open block's.
func open0(stack []level) int {
	if len(stack) == 0 {
		return -1
	}
	return stack[len(stack)-1].indent
}

// emptyValue reports whether a value is absent (or only an anchor or a tag).
func emptyValue(v string) bool {
	for _, w := range strings.Fields(v) {
		if w[0] != '&' && w[0] != '!' {
			return false
		}
	}
	return true
}

// plainStart reports whether a value is a plain scalar (not quoted, flow, block
// scalar or alias), which a more indented line may continue.
func plainStart(v string) bool {
	if v == "" {
		return false
	}
	switch v[0] {
	case '\'', '"', '[', '{', '|', '>', '*', '&', '!':
		return false
	}
	return true
}

var anchorRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^unknown anchor '(.*)' referenced$`) })

// locateSyntax finds where yaml.v3's syntax error msg points in data. yamlLine is
// the line yaml.v3 printed (0 when it printed none).
func locateSyntax(data []byte, yamlLine int, msg string) (syntaxPos, bool) {
	lx := lex(data)
	atOrAfter := func(p syntaxPos) bool { return p.line > 0 && p.line >= yamlLine }
	// exactLine is the line of a scanner error: yaml.v3 prints it 1-based, and
	// prints none on the first line.
	exactLine := max(yamlLine, 1)
	switch {
	case anchorRE().MatchString(msg):
		name := anchorRE().FindStringSubmatch(msg)[1]
		for _, ln := range lx.lines {
			for k := strings.Index(ln.text, "*"+name); k >= 0; {
				endOK := k+1+len(name) == len(ln.text) || strings.ContainsRune(" ,]}", rune(ln.text[k+1+len(name)]))
				if endOK && !ln.cont {
					return syntaxPos{line: ln.n, col: k + 1, note: "no anchor &" + name + " comes before this alias"}, true
				}
				next := strings.Index(ln.text[k+1:], "*"+name)
				if next < 0 {
					break
				}
				k += 1 + next
			}
		}
	case strings.HasPrefix(msg, "found unexpected end of stream"):
		if lx.quote.line > 0 {
			return lx.quote, true
		}
		if lx.flow.line > 0 {
			return lx.flow, true
		}
	case strings.HasPrefix(msg, "did not find expected ',' or"), strings.HasPrefix(msg, "did not find expected node content"):
		if atOrAfter(lx.flow) {
			return lx.flow, true
		}
		if atOrAfter(lx.stray) {
			return lx.stray, true
		}
	case msg == "found character that cannot start any token":
		if exactLine <= len(lx.lines) {
			ln := lx.lines[exactLine-1]
			if ln.tab >= 0 {
				return syntaxPos{line: ln.n, col: ln.tab + 1, note: "a tab in the indentation: YAML indents with spaces only"}, true
			}
			for k := ln.indent; k < len(ln.text); k++ {
				if c := ln.text[k]; (c == '@' || c == '`' || c == '\t') && tokenStart(ln.text, k) {
					return syntaxPos{line: ln.n, col: k + 1, note: fmt.Sprintf("%q cannot begin a plain value; quote the value", c)}, true
				}
			}
		}
		return syntaxPos{}, false
	}
	if msg == "did not find expected key" && atOrAfter(lx.stray) {
		return lx.stray, true
	}
	p := checkStructure(lx.lines)
	if !atOrAfter(p) {
		if lx.flow.line > 0 && atOrAfter(lx.flow) && strings.Contains(msg, "flow") {
			return lx.flow, true
		}
		return syntaxPos{}, false
	}
	if isScannerError(msg) && p.line != exactLine {
		return syntaxPos{}, false
	}
	return p, true
}

// isScannerError reports whether yaml.v3's message comes from its scanner, whose
// printed line is the problem's own (parser errors print the 0-based line of the
// enclosing construct).
func isScannerError(msg string) bool {
	return strings.HasPrefix(msg, "mapping values are not allowed") || strings.HasPrefix(msg, "could not find expected ':'") ||
		strings.HasPrefix(msg, "block sequence entries are not allowed") || strings.HasPrefix(msg, "found ")
}

// located builds the syntax error's FieldError fields from yaml.v3's error text.
func located(data []byte, text string) (line, col int, msg string) {
	text = strings.TrimPrefix(text, "yaml: ")
	yamlLine := 0
	if m := yamlLineRE().FindStringSubmatch("yaml: " + text); m != nil {
		yamlLine, _ = strconv.Atoi(m[1])
		text = m[2]
	}
	msg = "YAML syntax error: " + text
	if p, ok := locateSyntax(data, yamlLine, text); ok {
		if p.note != "" {
			msg += ": " + p.note
		}
		return p.line, p.col, msg
	}
	return yamlLine, 0, msg
}
