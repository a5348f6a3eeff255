package audit

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
)

// Record is one audit record: its type and the fields of its text
// "audit(SEC.MSEC:SERIAL): key=value …". Values are unquoted; the fields the
// kernel logs as untrusted strings (path, exe, comm, ocomm, proctitle) are
// hex-decoded when the kernel hex-encoded them (a value with a space, a quote or
// a control character, and an abstract socket's leading NUL).
type Record struct {
	Type   uint16
	Stamp  string // "SEC.MSEC"
	Serial uint64
	Fields []Field
}

// Field is one key=value of a record.
type Field struct{ Key, Value string }

// untrusted are the fields the kernel writes with audit_log_untrustedstring.
var untrusted = map[string]bool{"path": true, "exe": true, "comm": true, "ocomm": true, "proctitle": true, "name": true, "cwd": true}

// ParseRecord parses the text of a record of type typ.
func ParseRecord(typ uint16, text string) (Record, error) {
	r := Record{Type: typ}
	rest, ok := strings.CutPrefix(text, "audit(")
	if !ok {
		return r, fmt.Errorf("audit record type %d: no \"audit(\" prefix in %.60q", typ, text)
	}
	head, rest, ok := strings.Cut(rest, "):")
	if !ok {
		return r, fmt.Errorf("audit record type %d: unterminated stamp in %.60q", typ, text)
	}
	stamp, serial, ok := strings.Cut(head, ":")
	if !ok {
		return r, fmt.Errorf("audit record type %d: stamp %q has no serial", typ, head)
	}
	n, err := strconv.ParseUint(serial, 10, 64)
	if err != nil {
		return r, fmt.Errorf("audit record type %d: serial %q: %w", typ, serial, err)
	}
	r.Stamp, r.Serial = stamp, n
	for s := strings.TrimLeft(rest, " "); s != ""; s = strings.TrimLeft(s, " ") {
		key, v, ok := strings.Cut(s, "=")
		if !ok || key == "" || strings.ContainsAny(key, " '\"") {
			return r, fmt.Errorf("audit record type %d serial %d: malformed field at %.40q", typ, n, s)
		}
		var val string
		switch {
		case strings.HasPrefix(v, "\""):
			end := strings.IndexByte(v[1:], '"')
			if end < 0 {
				return r, fmt.Errorf("audit record type %d serial %d: unterminated %s", typ, n, key)
			}
			val, s = v[1:1+end], v[2+end:]
		case strings.HasPrefix(v, "'"):
			end := strings.IndexByte(v[1:], '\'')
			if end < 0 {
				return r, fmt.Errorf("audit record type %d serial %d: unterminated %s", typ, n, key)
			}
			val, s = v[1:1+end], v[2+end:]
		default:
			end := strings.IndexByte(v, ' ')
			if end < 0 {
				end = len(v)
			}
			val, s = v[:end], v[end:]
			if untrusted[key] && isHex(val) {
				b, _ := hex.DecodeString(val)
				val = string(b)
			}
		}
		r.Fields = append(r.Fields, Field{Key: key, Value: val})
	}
	return r, nil
}

func isHex(s string) bool {
	if s == "" || len(s)%2 != 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// Get returns the first value of key.
func (r *Record) Get(key string) (string, bool) {
	for _, f := range r.Fields {
		if f.Key == key {
			return f.Value, true
		}
	}
	return "", false
}

func (r *Record) uint(key string, base, bits int) (uint64, error) {
	v, ok := r.Get(key)
	if !ok {
		return 0, fmt.Errorf("audit record type %d serial %d: no %s", r.Type, r.Serial, key)
	}
	n, err := strconv.ParseUint(v, base, bits)
	if err != nil {
		return 0, fmt.Errorf("audit record type %d serial %d: %s=%q: %w", r.Type, r.Serial, key, v, err)
	}
	return n, nil
}

func (r *Record) optInt(key string) int {
	v, _ := r.Get(key)
	n, _ := strconv.Atoi(v)
	return n
}

// LandlockAccess is an AUDIT_LANDLOCK_ACCESS record: a request denied by the
// Landlock domain Domain (the youngest layer that denied it).
type LandlockAccess struct {
	Domain   uint64
	Blockers []string // "fs.read_file", "net.connect_tcp", "scope.signal", "ptrace", …
	// Object fields, as the kernel logs them for the kind of request.
	Path  string // fs.*: the file or (make/remove/refer) the directory; an abstract socket: "\x00name"
	Dev   string
	Ino   uint64
	Addr  string // net.*: daddr (connect) or saddr (bind)
	Port  uint16 // net.*: dest (connect) or src (bind); 0 when the kernel logged none
	OPID  int    // scope.signal, ptrace: the target
	OComm string
}

// LandlockAccess decodes a type-1423 record.
func (r *Record) LandlockAccess() (LandlockAccess, error) {
	var a LandlockAccess
	d, err := r.uint("domain", 16, 64)
	if err != nil {
		return a, err
	}
	b, ok := r.Get("blockers")
	if !ok || b == "" {
		return a, fmt.Errorf("audit record type %d serial %d: no blockers", r.Type, r.Serial)
	}
	a.Domain, a.Blockers = d, strings.Split(b, ",")
	a.Path, _ = r.Get("path")
	a.Dev, _ = r.Get("dev")
	if v, ok := r.Get("ino"); ok {
		a.Ino, _ = strconv.ParseUint(v, 10, 64)
	}
	if v, ok := r.Get("daddr"); ok {
		a.Addr = v
		a.Port = uint16(r.optInt("dest"))
	} else if v, ok := r.Get("saddr"); ok {
		a.Addr = v
		a.Port = uint16(r.optInt("src"))
	}
	a.OPID = r.optInt("opid")
	a.OComm, _ = r.Get("ocomm")
	return a, nil
}

// LandlockDomain is an AUDIT_LANDLOCK_DOMAIN record: a domain's allocation (its
// creator, logged with the domain's first logged denial) or its deallocation
// (with the number of requests it denied, logged or not).
type LandlockDomain struct {
	Domain    uint64
	Allocated bool
	PID       int // creator (allocated)
	UID       uint32
	Exe, Comm string
	Denials   uint64 // deallocated
}

// LandlockDomain decodes a type-1424 record.
func (r *Record) LandlockDomain() (LandlockDomain, error) {
	var d LandlockDomain
	id, err := r.uint("domain", 16, 64)
	if err != nil {
		return d, err
	}
	d.Domain = id
	st, _ := r.Get("status")
	switch st {
	case "allocated":
		d.Allocated = true
		pid, err := r.uint("pid", 10, 31)
		if err != nil {
			return d, err
		}
		d.PID = int(pid)
		uid, _ := r.uint("uid", 10, 32)
		d.UID = uint32(uid)
		d.Exe, _ = r.Get("exe")
		d.Comm, _ = r.Get("comm")
	case "deallocated":
		d.Denials, _ = r.uint("denials", 10, 64)
	default:
		return d, fmt.Errorf("audit record type %d serial %d: status %q", r.Type, r.Serial, st)
	}
	return d, nil
}

// Syscall is the part of an AUDIT_SYSCALL (1300) or AUDIT_SECCOMP (1326) record
// agentexec uses: who made which syscall.
type Syscall struct {
	PID, PPID int // PPID: 0 in seccomp records
	Arch      uint32
	Nr        int
	Comm, Exe string
	Code      uint32 // seccomp: the filter's action (SECCOMP_RET_*)
}

// Syscall decodes a type-1300 or type-1326 record.
func (r *Record) Syscall() (Syscall, error) {
	var s Syscall
	pid, err := r.uint("pid", 10, 31)
	if err != nil {
		return s, err
	}
	arch, err := r.uint("arch", 16, 32)
	if err != nil {
		return s, err
	}
	nr, err := r.uint("syscall", 10, 31)
	if err != nil {
		return s, err
	}
	s.PID, s.Arch, s.Nr = int(pid), uint32(arch), int(nr)
	s.PPID = r.optInt("ppid")
	s.Comm, _ = r.Get("comm")
	s.Exe, _ = r.Get("exe")
	if v, ok := r.Get("code"); ok {
		c, _ := strconv.ParseUint(strings.TrimPrefix(v, "0x"), 16, 32)
		s.Code = uint32(c)
	}
	return s, nil
}
