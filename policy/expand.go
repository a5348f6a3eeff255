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
}

// expand substitutes the known ${NAME} forms in s. "$$" stands for a literal "$";
// any other "$" is an error, as are unknown or unset variables.
func (x *expander) expand(s string) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
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
			return "", fmt.Errorf("%q: a bare $ is not expanded; write ${WORKSPACE}, ${HOME} or ${TMPDIR} (or $$ for a literal $)", s)
		}
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", fmt.Errorf("%q: unterminated ${", s)
		}
		name := s[i+2 : i+2+end]
		v, known := x.vars[name]
		if !known {
			return "", fmt.Errorf("%q: unknown variable ${%s} (known: ${WORKSPACE}, ${HOME}, ${TMPDIR})", s, name)
		}
		if v == "" {
			return "", fmt.Errorf("%q: ${%s} is not set (%s)", s, name, x.why[name])
		}
		b.WriteString(v)
		i += 2 + end
	}
	return b.String(), nil
}

// absPath expands s and checks that the result is an absolute path, then cleans it.
func (x *expander) absPath(s string) (string, error) {
	e, err := x.expand(s)
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
	return filepath.Clean(e), nil
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
