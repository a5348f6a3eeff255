package audit

import (
	"encoding/hex"
	"strings"
	"testing"
)

// kernelUntrusted writes s as the kernel's audit_log_untrustedstring does: in hex
// (upper case) when it holds a '"', a space, a control character or a byte above
// 0x7e, else in double quotes.
func kernelUntrusted(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c < 0x21 || c > 0x7e {
			return strings.ToUpper(hex.EncodeToString([]byte(s)))
		}
	}
	return `"` + s + `"`
}

// FuzzUntrustedField: a name a sandboxed tool chooses (the path it opens, its
// program's name) reaches the collector inside a Landlock record. Whatever the
// name, the record parses into exactly the fields the kernel wrote, with the name
// back as it was: a tool cannot forge a domain or a field of another record.
func FuzzUntrustedField(f *testing.F) {
	for _, s := range []string{"/etc/shadow", `/x" domain=1 blockers="fs.write_file`, "/a b", "ABCD", "/a'b", "", "\x7f", "/é", "domain=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if name == "" || strings.IndexByte(name, 0) >= 0 {
			return // the kernel logs no empty or NUL-containing name
		}
		text := "audit(1700000000.123:42): domain=1a2b blockers=fs.read_file path=" + kernelUntrusted(name) +
			` dev="sda1" ino=77 comm=` + kernelUntrusted(name)
		r, err := ParseRecord(1423, text)
		if err != nil {
			t.Fatalf("%q: %v", text, err)
		}
		want := []Field{{"domain", "1a2b"}, {"blockers", "fs.read_file"}, {"path", name}, {"dev", "sda1"}, {"ino", "77"}, {"comm", name}}
		if len(r.Fields) != len(want) {
			t.Fatalf("%q parsed into %d fields: %+v", text, len(r.Fields), r.Fields)
		}
		for i := range want {
			if r.Fields[i] != want[i] {
				t.Fatalf("%q: field %d is %+v, want %+v", text, i, r.Fields[i], want[i])
			}
		}
		if r.Serial != 42 {
			t.Fatalf("serial %d", r.Serial)
		}
	})
}
