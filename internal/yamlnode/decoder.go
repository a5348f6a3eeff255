// Package yamlnode holds the strict, position-keeping helpers that read yaml.v3
// node trees for policy files (package policy) and job files (internal/ci).
//
// A Decoder collects every problem as a *FieldError (FILE:LINE:COL: FIELD: MSG).
// Every helper reports its problems to the Decoder and returns ok=false; callers
// skip the value and go on, so that one parse reports every problem. Nothing here
// touches the host, and it imports no agentexec package.
package yamlnode

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Decoder collects the problems found while walking one file.
type Decoder struct {
	// File names the file in every FieldError.
	File string
	// Errs are the problems found so far, in the order found.
	Errs []*FieldError
}

// Fail records a problem at n (no position when n is nil) in field.
func (d *Decoder) Fail(n *yaml.Node, field, format string, args ...any) {
	fe := &FieldError{File: d.File, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		fe.Line, fe.Col = n.Line, n.Column
	}
	d.Errs = append(d.Errs, fe)
}

// Err returns the problems found, nil if none: sorted into file order (errors
// of another file keep their place) with exact duplicates (the same inherited
// problem found through several paths) reported once, joined with errors.Join.
func (d *Decoder) Err() error {
	if len(d.Errs) == 0 {
		return nil
	}
	slices.SortStableFunc(d.Errs, func(a, b *FieldError) int {
		if a.File != b.File {
			return 0
		}
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	errs := make([]error, 0, len(d.Errs))
	seen := map[string]bool{}
	for _, e := range d.Errs {
		if s := e.Error(); !seen[s] {
			seen[s] = true
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}

var yamlLineRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^yaml: line ([0-9]+): (.*)$`) })

// SyntaxError turns a yaml.v3 parse error into a *FieldError. yaml.v3 has no typed
// syntax error, so its "yaml: line N: msg" text is the only place the line is found
// (the line of the construct it was reading, not the offending one: SyntaxErrorIn
// finds that one).
func (d *Decoder) SyntaxError(err error) error {
	fe := &FieldError{File: d.File, Msg: "YAML syntax error: " + strings.TrimPrefix(err.Error(), "yaml: "), Err: err}
	if m := yamlLineRE().FindStringSubmatch(err.Error()); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Msg = "YAML syntax error: " + m[2]
	}
	return fe
}

// SyntaxErrorIn is SyntaxError for a parse error of data: it locates the offending
// line and column by a scan of data (syntax.go) and says what is wrong there,
// keeping yaml.v3's line (and no column) where the scan finds nothing that fits.
func (d *Decoder) SyntaxErrorIn(data []byte, err error) error {
	fe := &FieldError{File: d.File, Err: err}
	fe.Line, fe.Col, fe.Msg = located(data, err.Error())
	return fe
}

// Single parses data as exactly one YAML document and returns its document node;
// nil, nil when data holds no document at all. what names the file kind in the
// error for a second document ("a policy", "a job file").
//
// The text must be UTF-8 (a UTF-8 byte order mark is allowed): yaml.v3 would read
// a text that starts with a UTF-16 one as UTF-16, whose lines and columns no
// position this package reports could name.
func (d *Decoder) Single(data []byte, what string) (*yaml.Node, error) {
	if len(data) >= 2 && (data[0] == 0xFE && data[1] == 0xFF || data[0] == 0xFF && data[1] == 0xFE) {
		return nil, &FieldError{File: d.File, Line: 1, Col: 1, Msg: fmt.Sprintf("%s must be UTF-8; this one starts with a UTF-16 byte order mark (%X %X): save it as UTF-8", what, data[0], data[1])}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, d.SyntaxErrorIn(data, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, &FieldError{File: d.File, Line: extra.Line, Col: extra.Column, Msg: what + " is a single YAML document; found another one here"}
	case !errors.Is(err, io.EOF):
		return nil, d.SyntaxErrorIn(data, err)
	}
	return &doc, nil
}
