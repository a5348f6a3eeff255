package yamlnode

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// root parses src (one document) and returns its top node.
func root(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatalf("yaml.Unmarshal(%q): %v", src, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		t.Fatalf("%q: not one document", src)
	}
	return doc.Content[0]
}

// errs returns the decoder's errors as strings, in Err's order.
func errs(d *Decoder) []string {
	err := d.Err()
	if err == nil {
		return nil
	}
	var out []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		out = append(out, e.Error())
	}
	return out
}

func check(t *testing.T, d *Decoder, want ...string) {
	t.Helper()
	got := errs(d)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n got  %q\n want %q", got, want)
	}
}

func TestFieldErrorFormat(t *testing.T) {
	inner := errors.New("inner")
	for _, tc := range []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "a.yaml", Line: 3, Col: 7, Field: "x.y", Msg: "bad"}, "a.yaml:3:7: x.y: bad"},
		{FieldError{File: "a.yaml", Line: 3, Msg: "bad"}, "a.yaml:3: bad"},
		{FieldError{File: "a.yaml", Col: 3, Field: "f", Msg: "bad"}, "a.yaml: f: bad"},
		{FieldError{File: "a.yaml", Msg: "bad", Err: inner}, "a.yaml: bad"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	e := &FieldError{Err: inner}
	if !errors.Is(e, inner) {
		t.Error("errors.Is does not reach Err")
	}
}

func TestErrSortsAndDedups(t *testing.T) {
	d := &Decoder{File: "f.yaml"}
	if d.Err() != nil {
		t.Fatal("Err() of a fresh decoder is not nil")
	}
	n := func(line, col int) *yaml.Node { return &yaml.Node{Line: line, Column: col} }
	d.Fail(n(5, 1), "e", "five")
	d.Fail(n(2, 3), "b", "two %d", 2)
	d.Fail(nil, "", "no position")
	d.Fail(n(2, 1), "a", "first")
	d.Fail(n(5, 1), "e", "five") // duplicate: reported once
	// Another file's errors keep their place (sorted only among their own file).
	d.Errs = append(d.Errs, &FieldError{File: "other.yaml", Line: 1, Col: 1, Msg: "other"})
	check(t, d,
		"f.yaml: no position",
		"f.yaml:2:1: a: first",
		"f.yaml:2:3: b: two 2",
		"f.yaml:5:1: e: five",
		"other.yaml:1:1: other",
	)
	var fe *FieldError
	if !errors.As(d.Err(), &fe) {
		t.Error("Err() holds no *FieldError")
	}
}

func TestSingle(t *testing.T) {
	d := &Decoder{File: "f.yaml"}
	for _, src := range []string{"", "# only a comment\n"} {
		doc, err := d.Single([]byte(src), "a thing")
		if doc != nil || err != nil {
			t.Errorf("Single(%q) = %v, %v; want nil, nil", src, doc, err)
		}
	}
	doc, err := d.Single([]byte("a: 1\n"), "a thing")
	if err != nil || doc == nil || doc.Kind != yaml.DocumentNode {
		t.Fatalf("Single(one doc) = %v, %v", doc, err)
	}
	// A UTF-8 byte order mark is no reason to refuse.
	if doc, err := d.Single([]byte("\xef\xbb\xbfa: 1\n"), "a thing"); err != nil || doc == nil {
		t.Errorf("Single(UTF-8 with BOM) = %v, %v", doc, err)
	}
	// Control: without the check, yaml.v3 reads the UTF-16 text (a mapping a: 1).
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("\xff\xfea\x00:\x00 \x001\x00"), &n); err != nil || len(n.Content) == 0 || n.Content[0].Kind != yaml.MappingNode {
		t.Errorf("control: yaml.v3 on UTF-16LE: %v, %+v", err, n)
	}
	for _, tc := range []struct{ src, want string }{
		{"a: 1\n---\nb: 2\n", "f.yaml:2:1: a thing is a single YAML document; found another one here"},
		{"a: [1\n", "f.yaml:1:4: YAML syntax error: did not find expected ',' or ']': the '[' here is never closed"},
		{"a: 1\n---\n\tb: [\n", "f.yaml:3:1: YAML syntax error: found character that cannot start any token: a tab in the indentation: YAML indents with spaces only"},
		{"a: *x\n", "f.yaml:1:4: YAML syntax error: unknown anchor 'x' referenced: no anchor &x comes before this alias"},
		// UTF-16 (yaml.v3 would read it so: "\xfe\xff ( (00" is LS LS U+3030).
		{"\xfe\xff ( (00", "f.yaml:1:1: a thing must be UTF-8; this one starts with a UTF-16 byte order mark (FE FF): save it as UTF-8"},
		{"\xff\xfea\x00:\x00 \x001\x00", "f.yaml:1:1: a thing must be UTF-8; this one starts with a UTF-16 byte order mark (FF FE): save it as UTF-8"},
	} {
		_, err := d.Single([]byte(tc.src), "a thing")
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("Single(%q) = %v, want a *FieldError", tc.src, err)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("Single(%q) = %q, want %q", tc.src, err, tc.want)
		}
	}
}

func TestSyntaxErrorKeepsCause(t *testing.T) {
	d := &Decoder{File: "f.yaml"}
	cause := fmt.Errorf("yaml: line 7: mapping values are not allowed in this context")
	err := d.SyntaxError(cause)
	if err.Error() != "f.yaml:7: YAML syntax error: mapping values are not allowed in this context" {
		t.Errorf("SyntaxError = %q", err)
	}
	if !errors.Is(err, cause) {
		t.Error("SyntaxError does not wrap its cause")
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"~", "nothing (null)"},
		{"{a: 1}", "a mapping"},
		{"[1]", "a list"},
		{"12", "the number 12"},
		{"1.5", "the number 1.5"},
		{"true", "the boolean true"},
		{"hi", `"hi"`},
		{`"a\tb"`, `"a\tb"`},
		{"!!binary gIGC", `!!binary "gIGC"`},
		{"2001-12-14", `!!timestamp "2001-12-14"`},
	} {
		if got := Describe(root(t, tc.src)); got != tc.want {
			t.Errorf("Describe(%s) = %q, want %q", tc.src, got, tc.want)
		}
	}
	if got := Describe(nil); got != "nothing (null)" {
		t.Errorf("Describe(nil) = %q", got)
	}
	// Aliases are followed.
	m := root(t, "a: &x [1]\nb: *x\n")
	if got := Describe(m.Content[3]); got != "a list" {
		t.Errorf("Describe(alias of a list) = %q", got)
	}
}

func TestJoinIndex(t *testing.T) {
	if got := Join("", "a"); got != "a" {
		t.Errorf("Join root = %q", got)
	}
	if got := Join("a.b", "c"); got != "a.b.c" {
		t.Errorf("Join = %q", got)
	}
	if got := Index("a.b", 2); got != "a.b[2]" {
		t.Errorf("Index = %q", got)
	}
}

func TestMapping(t *testing.T) {
	d := &Decoder{File: "f.yaml"}
	pairs, ok := d.Mapping(root(t, "a: 1\nb: &v [x]\na: 2\n? [k]\n: 3\n<<: {c: 4}\nc: *v\n"), "m")
	if !ok {
		t.Fatal("Mapping ok = false")
	}
	var keys []string
	for _, p := range pairs {
		keys = append(keys, p.Key)
	}
	if strings.Join(keys, ",") != "a,b,c" {
		t.Errorf("keys = %v, want a,b,c", keys)
	}
	if pairs[2].V.Kind != yaml.AliasNode || pairs[2].K.Line != 7 {
		t.Errorf("pair c = %+v; want the value as written (an alias) and the key node", pairs[2])
	}
	check(t, d,
		`f.yaml:3:1: m.a: duplicate key "a" (first defined at line 1, column 1)`,
		"f.yaml:4:3: m: keys must be plain strings, got a list",
		"f.yaml:6:1: m.<<: merge keys (<<) are not supported; use an alias (*name) for a whole value instead",
	)

	d = &Decoder{File: "f.yaml"}
	if pairs, ok := d.Mapping(root(t, "~"), "m"); !ok || pairs != nil {
		t.Errorf("Mapping(null) = %v, %v; want an empty mapping", pairs, ok)
	}
	if _, ok := d.Mapping(root(t, "[1]"), "m"); ok {
		t.Error("Mapping(list) ok = true")
	}
	check(t, d, "f.yaml:1:1: m: expected a mapping, got a list")
}

func TestScalars(t *testing.T) {
	d := &Decoder{File: "f.yaml"}
	m, _ := d.Mapping(root(t, `
s: hello
n: 12
nil: ~
list: [a, 2, {x: y}]
t: yes
f: false
big: 18446744073709551615
neg: -3
e: red
`), "")
	v := map[string]*yaml.Node{}
	for _, p := range m {
		v[p.Key] = p.V
	}
	if s, ok := d.Str(v["s"], "s"); !ok || s != "hello" {
		t.Errorf("Str = %q, %v", s, ok)
	}
	if s, ok := d.Str(v["n"], "n"); !ok || s != "12" {
		t.Errorf("Str(number) = %q, %v; any scalar is a string", s, ok)
	}
	if _, ok := d.Str(v["nil"], "nil"); ok {
		t.Error("Str(null) ok")
	}
	if items, ok := d.Seq(v["list"], "list"); !ok || len(items) != 3 {
		t.Errorf("Seq = %d items, %v", len(items), ok)
	}
	if items, ok := d.Seq(v["nil"], "nil"); !ok || items != nil {
		t.Errorf("Seq(null) = %v, %v; want an empty list", items, ok)
	}
	if _, ok := d.Seq(v["s"], "s"); ok {
		t.Error("Seq(string) ok")
	}
	if l, ok := d.StrList(v["list"], "list"); ok || strings.Join(l, ",") != "a,2" {
		t.Errorf("StrList = %q, %v; want the good items and false", l, ok)
	}
	if b, ok := d.Boolean(v["f"], "f"); !ok || b {
		t.Errorf("Boolean(false) = %v, %v", b, ok)
	}
	if _, ok := d.Boolean(v["t"], "t"); ok {
		t.Error(`Boolean("yes") ok; YAML 1.2 has only true and false`)
	}
	if x, ok := d.Integer(v["n"], "n", 1, 12); !ok || x != 12 {
		t.Errorf("Integer = %d, %v", x, ok)
	}
	if _, ok := d.Integer(v["neg"], "neg", 0, 5); ok {
		t.Error("Integer below range ok")
	}
	if _, ok := d.Integer(v["big"], "big", 0, 5); ok {
		t.Error("Integer overflow ok")
	}
	if _, ok := d.Integer(v["s"], "s", 0, 5); ok {
		t.Error("Integer(string) ok")
	}
	if e, ok := d.Enum(v["e"], "e", "red", "green"); !ok || e != "red" {
		t.Errorf("Enum = %q, %v", e, ok)
	}
	if _, ok := d.Enum(v["s"], "s", "red", "green"); ok {
		t.Error("Enum(unknown) ok")
	}
	if _, ok := d.Enum(v["list"], "list", "red", "green"); ok {
		t.Error("Enum(list) ok")
	}
	check(t, d,
		"f.yaml:2:4: s: expected a list, got \"hello\"",
		"f.yaml:2:4: s: expected an integer, got \"hello\"",
		"f.yaml:2:4: s: \"hello\" is not one of red, green",
		"f.yaml:4:6: nil: expected a string, got nothing (null)",
		"f.yaml:5:7: list: expected one of red, green, got a list",
		"f.yaml:5:14: list[2]: expected a string, got a mapping",
		"f.yaml:6:4: t: expected true or false, got \"yes\"",
		"f.yaml:8:6: big: 18446744073709551615 is out of range (0 to 5)",
		"f.yaml:9:6: neg: -3 is out of range (0 to 5)",
	)
}

func TestObject(t *testing.T) {
	d := &Decoder{File: "f.yaml"}
	got := map[string]string{}
	specs := []Field{
		{Name: "name", Fn: func(k, v *yaml.Node, f string, extend bool) {
			s, _ := d.Str(v, f)
			got[f] = fmt.Sprintf("%s@%d ext=%v", s, k.Line, extend)
		}},
		{Name: "steps", List: true, Fn: func(_, v *yaml.Node, f string, extend bool) { got[f] = fmt.Sprintf("ext=%v", extend) }},
	}
	ok := d.Object(root(t, "name: x\nnmae: y\nsteps+: []\nzzzzzz: 1\n"), "job", specs) //nolint:misspell // the typo is the test
	if !ok {
		t.Fatal("Object ok = false")
	}
	if fmt.Sprint(got) != "map[job.name:x@1 ext=false]" {
		t.Errorf("dispatched %v", got)
	}
	check(t, d,
		`f.yaml:2:1: job.nmae: unknown field "nmae" (did you mean "name"?)`, //nolint:misspell // the typo is the test
		`f.yaml:3:1: job.steps+: unknown field "steps+" (did you mean "steps"?)`,
		`f.yaml:4:1: job.zzzzzz: unknown field "zzzzzz" (known: name, steps)`,
	)
	d = &Decoder{File: "f.yaml"}
	if d.Object(root(t, "[1]"), "job", specs) {
		t.Error("Object(list) ok = true")
	}
	check(t, d, "f.yaml:1:1: job: expected a mapping, got a list")
}

func TestObjectExt(t *testing.T) {
	d := &Decoder{File: "f.yaml"}
	got := map[string]bool{}
	specs := []Field{
		{Name: "read", List: true, Fn: func(_, _ *yaml.Node, f string, extend bool) { got[f] = extend }},
		{Name: "memory", Fn: func(_, _ *yaml.Node, f string, extend bool) { got[f] = extend }},
	}
	d.ObjectExt(root(t, "read+: [a]\nmemory+: 1\n+: 2\n"), "t", true, specs)
	d.ObjectExt(root(t, "read+: [a]\nread: [b]\n"), "u", true, specs)
	d.ObjectExt(root(t, "read+: [a]\nmemory: 1\n"), "defaults", false, specs)
	if fmt.Sprint(got) != "map[defaults.memory:false t.read+:true u.read+:true]" {
		t.Errorf("dispatched %v", got)
	}
	check(t, d,
		`f.yaml:1:1: defaults.read+: read+ extends the defaults, which only a tool can do; write read`,
		`f.yaml:2:1: t.memory+: "memory" is not a list; only list fields can be extended with +`,
		`f.yaml:2:1: u.read: both read+ and read are set; use one`,
		`f.yaml:3:1: t.+: unknown field "+" (known: read, memory)`,
	)
}

func TestClosest(t *testing.T) {
	names := []string{"filesystem", "network", "limits", "env"}
	for _, tc := range []struct{ s, want string }{
		{"filesytem", "filesystem"},
		{"netwrk", "network"},
		{"limts", "limits"},
		{"evn", "env"},
		{"ipc", ""},
		{"", ""},
		{strings.Repeat("a", 65), ""},
	} {
		if got := Closest(tc.s, names); got != tc.want {
			t.Errorf("Closest(%q) = %q, want %q", tc.s, got, tc.want)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "abc", 0},
		{"", "abc", 3},
		{"kitten", "sitting", 3},
		{"flaw", "lawn", 2},
		{"ab", "ba", 2},
		{strings.Repeat("a", 65), "a", 99},
	} {
		if got := EditDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := EditDistance(tc.b, tc.a); got != tc.want {
			t.Errorf("EditDistance(%q, %q) = %d, want %d", tc.b, tc.a, got, tc.want)
		}
	}
}
