package policy

import (
	"fmt"
	"path/filepath"
	"strings"
)

// expander substitutes ${WORKSPACE}, ${HOME} and ${TMPDIR}.
type expander struct {
	vars map[string]string
	// why explains, per variable, why it is unset (when its value is "").
	why map[string]string
	// privateTmp: ${TMPDIR} is TmpDirPlaceholder, which a runtime replaces by a
	// directory of its own (WithTmpDir); a path that uses it must name it or lie
	// beneath it, so that the replacement gives the same path as an expansion would.
	privateTmp bool
}

// expand substitutes the known ${NAME} forms in s. "$$" stands for a literal "$";
// any other "$" is an error, as are unknown or unset variables.
func (x *expander) expand(s string) (string, error) {
	e, _, err := x.expandVars(s)
	return e, err
}

// expandVars is expand that also reports whether s used ${TMPDIR}.
func (x *expander) expandVars(s string) (e string, usedTmp bool, err error) {
	if !strings.Contains(s, "$") {
		return s, false, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' {
			b.WriteByte(c)
			continue
		}
		if i+1 < len(s) && s[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		if i+1 >= len(s) || s[i+1] != '{' {
			return "", false, fmt.Errorf("%q: a bare $ is not expanded; write ${WORKSPACE}, ${HOME} or ${TMPDIR} (or $$ for a literal $)", s)
		}
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", false, fmt.Errorf("%q: unterminated ${", s)
		}
		name := s[i+2 : i+2+end]
		v, known := x.vars[name]
		usedTmp = usedTmp || name == "TMPDIR"
		if !known {
			return "", false, fmt.Errorf("%q: unknown variable ${%s} (known: ${WORKSPACE}, ${HOME}, ${TMPDIR})", s, name)
		}
		if v == "" {
			return "", false, fmt.Errorf("%q: ${%s} is not set (%s)", s, name, x.why[name])
		}
		b.WriteString(v)
		i += 2 + end
	}
	return b.String(), usedTmp, nil
}

// absPath expands s and checks that the result is an absolute path, then cleans it.
func (x *expander) absPath(s string) (string, error) {
	e, usedTmp, err := x.expandVars(s)
	if err != nil {
		return "", err
	}
	if strings.IndexByte(e, 0) >= 0 {
		return "", fmt.Errorf("%q contains a NUL byte", s)
	}
	if !filepath.IsAbs(e) {
		if e != s {
			return "", fmt.Errorf("%q (%q after expansion) is not an absolute path", s, e)
		}
		return "", fmt.Errorf("%q is not an absolute path", s)
	}
	c := filepath.Clean(e)
	if usedTmp && x.privateTmp && !Beneath(c, TmpDirPlaceholder) {
		return "", fmt.Errorf("%q: ${TMPDIR} is a directory of each runtime's own here (Options.TmpDir is empty), so a path may name it or lie beneath it, and this one is %q", s, c)
	}
	return c, nil
}

// Beneath reports whether path equals root or lies under it. Both must be absolute
// and cleaned (filepath.Clean); Beneath compares them as strings and does not
// resolve symlinks. Every absolute path lies beneath "/".
func Beneath(path, root string) bool {
	if root == "/" {
		return true
	}
	return path == root || strings.HasPrefix(path, root+"/")
}
