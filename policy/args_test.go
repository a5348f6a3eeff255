package policy

import (
	"strings"
	"testing"
)

func TestGlob(t *testing.T) {
	tests := []struct {
		pat, s string
		want   bool
	}{
		{"push", "push", true},
		{"push", "pushx", false},
		{"push", "pus", false},
		{"-i*", "-i", true},
		{"-i*", "-i.bak", true},
		{"-i*", "-n", false},
		{"--upload-pack*", "--upload-pack=evil", true},
		{"*", "", true},
		{"*", "a/b/c", true},
		{"?", "", false},
		{"?", "é", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*.go", "x/y.go", true},
		{"*a*b*", "xxaxxbxx", true},
		{"*a*b*", "xxbxxaxx", false},
		{"a*b*c", "abbbbc", true},
		{"a*", "b", false},
		{"[ab]", "[ab]", true}, // brackets are literal
		{"[ab]", "a", false},
		{"", "", true},
		{"", "x", false},
	}
	for _, tt := range tests {
		if got := Glob(tt.pat, tt.s); got != tt.want {
			t.Errorf("Glob(%q, %q) = %v, want %v", tt.pat, tt.s, got, tt.want)
		}
	}
}

func TestParsePattern(t *testing.T) {
	p, err := ParsePattern("r", "  status|diff   --stat|-p ")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Words) != 2 || strings.Join(p.Words[0], ",") != "status,diff" || strings.Join(p.Words[1], ",") != "--stat,-p" {
		t.Errorf("Words = %q", p.Words)
	}
	for _, bad := range []string{"", "   ", "a|", "|a", "a||b", "x \xff"} {
		if _, err := ParsePattern("r", bad); err == nil {
			t.Errorf("ParsePattern(%q) succeeded", bad)
		}
	}
}

func gitRules(t *testing.T) *ArgRules {
	t.Helper()
	p := mustParse(t, base+`  git:
    args:
      allow: ["status|diff|log|show", "remote -v"]
      deny: [push, "-c", "--upload-pack*", "reset --hard"]
`)
	g, _ := p.Tool("git")
	return &g.Args
}

func TestArgRulesCheck(t *testing.T) {
	r := gitRules(t)
	tests := []struct {
		args []string
		want string // "" allowed, else the denial's Error()
	}{
		{[]string{"status"}, ""},
		{[]string{"diff", "--stat", "HEAD~1"}, ""},
		{[]string{"remote", "-v"}, ""},
		{[]string{"log", "--oneline", "-n", "5"}, ""},
		{[]string{"remote"}, `rule tools.git.args.allow: arguments ["remote"] match no allow pattern`},
		{[]string{"remote", "add", "x"}, `rule tools.git.args.allow: arguments ["remote" "add" "x"] match no allow pattern`},
		{[]string{}, `rule tools.git.args.allow: arguments [] match no allow pattern`},
		{[]string{"commit", "-m", "x"}, `rule tools.git.args.allow: arguments ["commit" "-m" "x"] match no allow pattern`},
		{[]string{"push"}, `rule tools.git.args.deny[0] ("push"): argument 1 "push" is denied`},
		{[]string{"log", "-c", "x"}, `rule tools.git.args.deny[1] ("-c"): argument 2 "-c" is denied`},
		{[]string{"show", "--upload-pack=evil"}, `rule tools.git.args.deny[2] ("--upload-pack*"): argument 2 "--upload-pack=evil" is denied`},
		{[]string{"status", "reset", "--hard"}, `rule tools.git.args.deny[3] ("reset --hard"): arguments 2-3 ["reset" "--hard"] are denied`},
		{[]string{"status", "--hard", "reset"}, ""},
		// deny wins over allow, and is checked first
		{[]string{"-c", "x=y", "status"}, `rule tools.git.args.deny[1] ("-c"): argument 1 "-c" is denied`},
	}
	for _, tt := range tests {
		d := r.Check(tt.args)
		got := ""
		if d != nil {
			got = d.Error()
		}
		if got != tt.want {
			t.Errorf("Check(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
	d := r.Check([]string{"diff", "push"})
	if d == nil || d.Rule != "tools.git.args.deny[0]" || d.Pattern != "push" || d.Index != 1 || len(d.Args) != 1 || d.Args[0] != "push" {
		t.Errorf("denial = %+v", d)
	}
}

func TestArgRulesEmpty(t *testing.T) {
	var none *ArgRules
	if d := none.Check([]string{"anything"}); d != nil {
		t.Errorf("nil rules denied: %v", d)
	}
	r := &ArgRules{}
	if d := r.Check(nil); d != nil {
		t.Errorf("empty rules denied: %v", d)
	}
	p := mustParse(t, base+"  sed:\n    args: {deny: [\"-i*\", \"--i*\", \"-?i*\", \"-??i*\"]}\n")
	sed, _ := p.Tool("sed")
	for _, a := range [][]string{{"-i", "s/a/b/", "f"}, {"-i.bak"}, {"--in-place=x"}, {"--in-pl"}, {"-ni"}, {"-nEi"}, {"-n", "-i"}} {
		if sed.Args.Check(a) == nil {
			t.Errorf("sed %q allowed", a)
		}
	}
	for _, a := range [][]string{{"-n", "s/i/j/p", "f"}, {"-E", "s/x/y/"}, {"--posix", "p"}} {
		if d := sed.Args.Check(a); d != nil {
			t.Errorf("sed %q denied: %v", a, d)
		}
	}
}

func TestEnvAllowed(t *testing.T) {
	e := &Env{Allow: []string{"LANG", "LC_*", "X?"}}
	for name, want := range map[string]bool{
		"LANG": true, "LC_ALL": true, "LC_": true, "XY": true, "X": false, "XYZ": false,
		"LANGUAGE": false, "lang": false, "": false, "LC_A=B": false, "LC_\x00": false, "PATH": false,
	} {
		if got := e.Allowed(name); got != want {
			t.Errorf("Allowed(%q) = %v, want %v", name, got, want)
		}
	}
	var none *Env
	if none.Allowed("LANG") {
		t.Error("nil Env allowed LANG")
	}
}
