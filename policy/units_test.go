package policy

import (
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"4096": 4096, "1B": 1, "512MiB": 512 << 20, "1G": 1 << 30, "1GiB": 1 << 30, "1GB": 1e9,
		"2K": 2048, "2k": 2048, "2KiB": 2048, "2KB": 2000, "1.5GiB": 3 << 29, "1 MiB": 1 << 20,
		"1T": 1 << 40, "8388607TiB": 8388607 << 40,
	}
	for s, want := range good {
		if got, err := ParseSize(s); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s, got, err, want)
		}
	}
	for _, s := range []string{"", "12XB", "-1", "0", "0.1", "1.5", "MiB", "1e3", "0x10", "1 2", "9223372036854775808", "8388608TiB", "1  MiB", " 1", "1.5.2G", "99999999999999999999999G"} {
		if got, err := ParseSize(s); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", s, got)
		}
	}
}

func TestParseCPU(t *testing.T) {
	good := map[string]float64{"1": 1, "1.5": 1.5, "150%": 1.5, "50%": 0.5, "0.01": 0.01, "1%": 0.01, "65536": 65536}
	for s, want := range good {
		if got, err := ParseCPU(s); err != nil || got != want {
			t.Errorf("ParseCPU(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "0", "0.001", "0.5%", "-1", "NaN", "Inf", "1e3", "1.5 cores", "%", "65537", "1.%"} {
		if got, err := ParseCPU(s); err == nil {
			t.Errorf("ParseCPU(%q) = %v, want an error", s, got)
		}
	}
}

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{"30s": 30 * time.Second, "1m30s": 90 * time.Second, "250ms": 250 * time.Millisecond, "2h": 2 * time.Hour}
	for s, want := range good {
		if got, err := ParseDuration(s); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "30", "0s", "-1s", "1 minute", "1d"} {
		if got, err := ParseDuration(s); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", s, got)
		}
	}
}

// TestLimitSpellings checks the YAML forms limits accept: numbers as well as strings,
// and unlimited/max for no limit.
func TestLimitSpellings(t *testing.T) {
	p := mustParse(t, base+`  a:
    limits: {memory: 4096, pids: 64, cpu: 2, timeout: 1m, output: 1KiB}
  b:
    limits: {memory: unlimited, pids: max, cpu: unlimited, timeout: unlimited, output: max}
  c:
    limits: {cpu: 0.25}
`)
	a, _ := p.Tool("a")
	if a.Profile.Limits != (Limits{Memory: 4096, Pids: 64, CPU: 2}) || a.Timeout != time.Minute || a.OutputBytes != 1024 {
		t.Errorf("a: %+v %v %d", a.Profile.Limits, a.Timeout, a.OutputBytes)
	}
	b, _ := p.Tool("b")
	if b.Profile.Limits != (Limits{}) || b.Timeout != 0 || b.OutputBytes != 0 {
		t.Errorf("b: %+v %v %d", b.Profile.Limits, b.Timeout, b.OutputBytes)
	}
	c, _ := p.Tool("c")
	if c.Profile.Limits.CPU != 0.25 {
		t.Errorf("c cpu = %v", c.Profile.Limits.CPU)
	}
}

func TestExpand(t *testing.T) {
	x := expander{vars: map[string]string{"WORKSPACE": "/w", "HOME": "/h", "TMPDIR": ""}, why: map[string]string{"TMPDIR": "because"}}
	good := map[string]string{
		"plain": "plain", "${WORKSPACE}": "/w", "${HOME}/.cache/${WORKSPACE}": "/h/.cache//w", "a$$b": "a$b", "$${HOME}": "${HOME}",
	}
	for in, want := range good {
		if got, err := x.expand(in); err != nil || got != want {
			t.Errorf("expand(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := map[string]string{
		"${TMPDIR}":  `"${TMPDIR}": ${TMPDIR} is not set (because)`,
		"${USER}":    `"${USER}": unknown variable ${USER} (known: ${WORKSPACE}, ${HOME}, ${TMPDIR})`,
		"${HOME":     `"${HOME": unterminated ${`,
		"$":          `"$": a bare $ is not expanded; write ${WORKSPACE}, ${HOME} or ${TMPDIR} (or $$ for a literal $)`,
		"${}":        `"${}": unknown variable ${} (known: ${WORKSPACE}, ${HOME}, ${TMPDIR})`,
		"$WORKSPACE": `"$WORKSPACE": a bare $ is not expanded; write ${WORKSPACE}, ${HOME} or ${TMPDIR} (or $$ for a literal $)`,
	}
	for in, want := range bad {
		if _, err := x.expand(in); err == nil || err.Error() != want {
			t.Errorf("expand(%q) error = %v, want %s", in, err, want)
		}
	}
	paths := map[string]string{"${WORKSPACE}/../x/./y/": "/x/y", "/": "/", "//a//b": "/a/b"}
	for in, want := range paths {
		if got, err := x.absPath(in); err != nil || got != want {
			t.Errorf("absPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := x.absPath("a/${WORKSPACE}"); err == nil || err.Error() != `"a/${WORKSPACE}" ("a//w" after expansion) is not an absolute path` {
		t.Errorf("absPath relative: %v", err)
	}
}

func TestBeneath(t *testing.T) {
	for _, c := range []struct {
		p, r string
		want bool
	}{{"/a/b", "/a", true}, {"/a", "/a", true}, {"/ab", "/a", false}, {"/a", "/a/b", false}, {"/x", "/", true}, {"/", "/", true}, {"/a", "/b", false}} {
		if got := Beneath(c.p, c.r); got != c.want {
			t.Errorf("Beneath(%q, %q) = %v", c.p, c.r, got)
		}
	}
}
