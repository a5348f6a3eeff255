package audit

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/policy"
)

// capturedRecord is one line of testdata/records-linux-6.18.txt.
type capturedRecord struct {
	typ  uint16
	text string
}

// loadCaptured reads the records captured on this kind of machine (see the file's
// header): "type=N TEXT" lines, "#" comments.
func loadCaptured(t *testing.T) []capturedRecord {
	t.Helper()
	f, err := os.Open("testdata/records-linux-6.18.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []capturedRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		head, text, ok := strings.Cut(line, " ")
		n, err := strconv.Atoi(strings.TrimPrefix(head, "type="))
		if !ok || err != nil {
			t.Fatalf("bad testdata line %q", line)
		}
		out = append(out, capturedRecord{uint16(n), text})
	}
	return out
}

// TestParseCaptured parses every captured record and checks the fields of each
// kind against what the kernel printed.
func TestParseCaptured(t *testing.T) {
	recs := loadCaptured(t)
	if len(recs) < 100 {
		t.Fatalf("only %d captured records", len(recs))
	}
	seen := map[string]bool{}
	for _, cr := range recs {
		r, err := ParseRecord(cr.typ, cr.text)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if r.Serial == 0 || !strings.Contains(r.Stamp, ".") {
			t.Errorf("stamp %q serial %d from %q", r.Stamp, r.Serial, cr.text)
		}
		switch cr.typ {
		case sys.AuditLandlockAccess:
			a, err := r.LandlockAccess()
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			if a.Domain == 0 || len(a.Blockers) == 0 {
				t.Errorf("access record %q: %+v", cr.text, a)
			}
			seen[a.Blockers[0]] = true
		case sys.AuditLandlockDomain:
			if _, err := r.LandlockDomain(); err != nil {
				t.Errorf("%v", err)
			}
		case sys.AuditSyscall, sys.AuditSeccomp:
			if _, err := r.Syscall(); err != nil {
				t.Errorf("%v", err)
			}
		}
	}
	for _, b := range []string{"fs.read_file", "fs.read_dir", "fs.make_reg", "fs.write_file", "net.connect_tcp", "net.bind_tcp", "scope.signal", "scope.abstract_unix_socket"} {
		if !seen[b] {
			t.Errorf("no captured record with blockers=%s", b)
		}
	}
}

func TestParseRecordFields(t *testing.T) {
	for _, tc := range []struct {
		typ  uint16
		text string
		want LandlockAccess
	}{
		{sys.AuditLandlockAccess, `audit(1796303767.186:18): domain=1974f968c blockers=fs.read_file path="/etc/hostname" dev="vda" ino=611`,
			LandlockAccess{Domain: 0x1974f968c, Blockers: []string{"fs.read_file"}, Path: "/etc/hostname", Dev: "vda", Ino: 611}},
		// A path with a space is hex-encoded by the kernel.
		{sys.AuditLandlockAccess, `audit(1796303767.194:19): domain=1974f9695 blockers=fs.read_file path=2F746D702F61756469746361702F7365637265742077697468207370616365 dev="vda" ino=9978143`,
			LandlockAccess{Domain: 0x1974f9695, Blockers: []string{"fs.read_file"}, Path: "/tmp/auditcap/secret with space", Dev: "vda", Ino: 9978143}},
		{sys.AuditLandlockAccess, `audit(1796303767.238:26): domain=1974f96bb blockers=net.connect_tcp daddr=127.0.0.1 dest=42811`,
			LandlockAccess{Domain: 0x1974f96bb, Blockers: []string{"net.connect_tcp"}, Addr: "127.0.0.1", Port: 42811}},
		{sys.AuditLandlockAccess, `audit(1796303767.270:35): domain=1974f96c5 blockers=net.bind_tcp saddr=127.0.0.1`,
			LandlockAccess{Domain: 0x1974f96c5, Blockers: []string{"net.bind_tcp"}, Addr: "127.0.0.1"}},
		{sys.AuditLandlockAccess, `audit(1796303767.306:42): domain=1974f96c9 blockers=scope.signal opid=23419 ocomm="sleep"`,
			LandlockAccess{Domain: 0x1974f96c9, Blockers: []string{"scope.signal"}, OPID: 23419, OComm: "sleep"}},
		{sys.AuditLandlockAccess, `audit(1796303767.330:47): domain=1974f96ce blockers=scope.abstract_unix_socket path=006167656E74657865632D6175646974636170`,
			LandlockAccess{Domain: 0x1974f96ce, Blockers: []string{"scope.abstract_unix_socket"}, Path: "\x00agentexec-auditcap"}},
		// The documentation's two-blocker example.
		{sys.AuditLandlockAccess, `audit(1729738800.221:33): domain=195ba459b blockers=fs.make_reg,fs.refer path="/usr/local" dev="vda2" ino=365`,
			LandlockAccess{Domain: 0x195ba459b, Blockers: []string{"fs.make_reg", "fs.refer"}, Path: "/usr/local", Dev: "vda2", Ino: 365}},
	} {
		r, err := ParseRecord(tc.typ, tc.text)
		if err != nil {
			t.Fatal(err)
		}
		a, err := r.LandlockAccess()
		if err != nil {
			t.Fatal(err)
		}
		if a.Domain != tc.want.Domain || strings.Join(a.Blockers, ",") != strings.Join(tc.want.Blockers, ",") || a.Path != tc.want.Path ||
			a.Dev != tc.want.Dev || a.Ino != tc.want.Ino || a.Addr != tc.want.Addr || a.Port != tc.want.Port || a.OPID != tc.want.OPID || a.OComm != tc.want.OComm {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.text, a, tc.want)
		}
	}
	r, _ := ParseRecord(sys.AuditLandlockDomain, `audit(1796303767.186:18): domain=1974f968c status=allocated mode=enforcing pid=23420 uid=0 exe="/tmp/auditcap/cap" comm="exe"`)
	if d, err := r.LandlockDomain(); err != nil || !d.Allocated || d.PID != 23420 || d.Exe != "/tmp/auditcap/cap" || d.Domain != 0x1974f968c {
		t.Errorf("allocated: %+v, %v", d, err)
	}
	r, _ = ParseRecord(sys.AuditLandlockDomain, `audit(1796303767.406:51): domain=1974f96ce status=deallocated denials=5`)
	if d, err := r.LandlockDomain(); err != nil || d.Allocated || d.Denials != 5 {
		t.Errorf("deallocated: %+v, %v", d, err)
	}
	r, _ = ParseRecord(sys.AuditSeccomp, `audit(1796303623.810:14): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=16492 comm="python3" exe="/usr/bin/python3.11" sig=0 arch=c000003e syscall=110 compat=0 ip=0x7ff8f9a284f7 code=0x50000`)
	if s, err := r.Syscall(); err != nil || s.PID != 16492 || s.Nr != 110 || s.Code != 0x50000 || SyscallName(s.Arch, s.Nr) != "getppid" {
		t.Errorf("seccomp: %+v, %v", s, err)
	}
	r, _ = ParseRecord(sys.AuditUser, `audit(1796303767.342:48): pid=23413 uid=0 auid=4294967295 ses=4294967295 msg='agentexec-sync abc 7'`)
	if m, _ := r.Get("msg"); m != "agentexec-sync abc 7" {
		t.Errorf("user msg %q", m)
	}
	for _, bad := range []string{"", "audit(1.2): x=1", "audit(1.2:x): a=1", `audit(1.2:3): path="/x`, "audit(1.2:3): novalue", `audit(1.2:3): domain=zz blockers=fs.read_file`} {
		r, err := ParseRecord(sys.AuditLandlockAccess, bad)
		if err == nil {
			if _, err = r.LandlockAccess(); err == nil {
				t.Errorf("%q parsed without error", bad)
			}
		}
	}
}

// marker hands c its own sync marker n, as the kernel would after every record
// queued before it.
func marker(c *Collector, n int) {
	c.handle(sys.AuditUser, "audit(9999999999.999:99999999): pid=1 uid=0 auid=4294967295 ses=4294967295 msg='agentexec-sync "+c.nonce+" "+strconv.Itoa(n)+"'")
}

// replay feeds captured records to a collector without sockets.
func replay(c *Collector, recs []capturedRecord) {
	for _, r := range recs {
		c.handle(r.typ, r.text)
	}
}

func denialSet(ds []policy.Denial) map[string]int {
	m := map[string]int{}
	for _, d := range ds {
		k := d.Access + " " + d.Object.Path
		if d.Object.Port != 0 {
			k += ":" + strconv.Itoa(int(d.Object.Port))
		}
		m[k] += d.Count
	}
	return m
}

// TestAttributeCaptured replays the capture: each launch gets exactly the records
// of its own domain (by the creator pid of the domain's allocation record), the
// others' are never shown, and a launch attached only after its records came (the
// spawner reports the pid later than the kernel logs) still gets them.
func TestAttributeCaptured(t *testing.T) {
	recs := loadCaptured(t)
	c := newCollector(Options{})
	cat := c.Begin()
	cat.Attach(23420) // cat /etc/hostname
	py := c.Begin()
	py.Attach(23449)  // the connect script: five records, some made by python (a grandchild)
	kill := c.Begin() // attached after its records: "kill -0"
	replay(c, recs)
	kill.Attach(23462)
	if got := denialSet(cat.denials); len(got) != 1 || got["fs.read_file /etc/hostname"] != 1 {
		t.Errorf("cat: %v", got)
	}
	want := map[string]int{"fs.read_file /etc/locale.alias": 1, "fs.read_file /etc/nsswitch.conf": 1, "fs.read_file /etc/passwd": 1,
		"fs.read_dir /tmp/auditcap": 1, "net.connect_tcp :42811": 1}
	if got := denialSet(py.denials); !mapsEqual(got, want) {
		t.Errorf("python connect: %v, want %v", got, want)
	}
	if len(kill.denials) != 1 || kill.denials[0].Access != "scope.signal" || kill.denials[0].Object.PID != 23419 || kill.denials[0].Object.Comm != "sleep" {
		t.Errorf("kill (attached late): %+v", kill.denials)
	}
	// Control: the same replay with no launch attached keeps nothing.
	c2 := newCollector(Options{})
	replay(c2, recs)
	marker(c2, 1)
	if len(c2.byDomain)+len(c2.unclaimed)+len(c2.domainOwner)+len(c2.parked) != 0 {
		t.Errorf("records kept with no launch: domains %d unclaimed %d owners %d parked %d", len(c2.byDomain), len(c2.unclaimed), len(c2.domainOwner), len(c2.parked))
	}
}

// TestCreatorExe: with CreatorExe set, a domain made by another program (a sandbox
// of the tool's own) is not the launch's even when its creator pid is.
func TestCreatorExe(t *testing.T) {
	recs := loadCaptured(t)
	for _, tc := range []struct {
		exe  string
		want int
	}{{"/tmp/auditcap/cap", 1}, {"/usr/local/bin/agentexec", 0}} {
		c := newCollector(Options{CreatorExe: tc.exe})
		l := c.Begin()
		l.Attach(23420)
		replay(c, recs)
		if len(l.denials) != tc.want {
			t.Errorf("CreatorExe %s: %d denials, want %d", tc.exe, len(l.denials), tc.want)
		}
	}
}

// TestSpawnerDomainByPID: records of a domain shared by launches (a spawner's,
// for kernel-template children) go to the launch whose pid (or parent pid) the
// event's syscall record names.
func TestSpawnerDomainByPID(t *testing.T) {
	recs := loadCaptured(t)
	c := newCollector(Options{})
	c.AddSpawner(23455) // pretend the bind script's domain creator is a spawner
	first := c.Begin()
	first.Attach(23460) // the first python3 (ppid 23455)
	second := c.Begin()
	second.Attach(23461)
	replay(c, recs)
	if got := denialSet(first.denials); got["net.bind_tcp "] != 1 || len(got) != 5 {
		t.Errorf("first python3: %v", got)
	}
	if got := denialSet(second.denials); got["net.bind_tcp :34567"] != 1 || len(got) != 5 {
		t.Errorf("second python3: %v", got)
	}
}

// TestCap: past MaxDenials distinct denials are counted, not kept; repeats of a
// kept one raise its count.
func TestCap(t *testing.T) {
	c := newCollector(Options{MaxDenials: 3})
	l := c.Begin()
	l.Attach(100)
	c.handle(sys.AuditLandlockAccess, `audit(1.0:1): domain=abc blockers=fs.read_file path="/f0" dev="vda" ino=1`)
	c.handle(sys.AuditLandlockDomain, `audit(1.0:1): domain=abc status=allocated mode=enforcing pid=100 uid=0 exe="/x" comm="x"`)
	for i := 2; i < 1002; i++ {
		c.handle(sys.AuditLandlockAccess, "audit(1.0:"+strconv.Itoa(i)+"): domain=abc blockers=fs.read_file path=\"/f"+strconv.Itoa(i%10)+"\" dev=\"vda\" ino=1")
	}
	// Kept: /f0 (1 + 100 repeats), /f2, /f3; the other 7 paths, 100 records
	// each, are omitted.
	if len(l.denials) != 3 {
		t.Fatalf("%d denials kept, want 3", len(l.denials))
	}
	counts := denialSet(l.denials)
	if counts["fs.read_file /f0"] != 101 || counts["fs.read_file /f2"] != 100 || counts["fs.read_file /f3"] != 100 || l.omitted != 700 {
		t.Errorf("counts %v omitted %d, want f0 101, f2 100, f3 100, omitted 700", counts, l.omitted)
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
