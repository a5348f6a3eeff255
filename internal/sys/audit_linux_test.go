//go:build linux

package sys

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestAuditStatusLayout checks AuditStatus against struct audit_status of
// include/uapi/linux/audit.h: eleven __u32 fields, 44 bytes (Linux 5.10 and later).
func TestAuditStatusLayout(t *testing.T) {
	var s AuditStatus
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"size", unsafe.Sizeof(s), SizeofAuditStatus},
		{"mask", unsafe.Offsetof(s.Mask), 0},
		{"enabled", unsafe.Offsetof(s.Enabled), 4},
		{"failure", unsafe.Offsetof(s.Failure), 8},
		{"pid", unsafe.Offsetof(s.PID), 12},
		{"rate_limit", unsafe.Offsetof(s.RateLimit), 16},
		{"backlog_limit", unsafe.Offsetof(s.BacklogLimit), 20},
		{"lost", unsafe.Offsetof(s.Lost), 24},
		{"backlog", unsafe.Offsetof(s.Backlog), 28},
		{"feature_bitmap", unsafe.Offsetof(s.FeatureBitmap), 32},
		{"backlog_wait_time", unsafe.Offsetof(s.BacklogWaitTime), 36},
		{"backlog_wait_time_actual", unsafe.Offsetof(s.BacklogWaitTimeActual), 40},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d, want %d", c.name, c.got, c.want)
		}
	}
	if SizeofAuditStatus != 44 {
		t.Errorf("SizeofAuditStatus %d, want 44", SizeofAuditStatus)
	}
}

// TestAuditConstants pins the record types to the kernel's numbers (the Landlock
// ones from Documentation/admin-guide/LSM/landlock.rst: 1423 and 1424).
func TestAuditConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"AUDIT_GET", AuditGet, 1000},
		{"AUDIT_SET", AuditSet, 1001},
		{"AUDIT_USER", AuditUser, 1005},
		{"AUDIT_SYSCALL", AuditSyscall, 1300},
		{"AUDIT_CONFIG_CHANGE", AuditConfigChange, 1305},
		{"AUDIT_EOE", AuditEOE, 1320},
		{"AUDIT_SECCOMP", AuditSeccomp, 1326},
		{"AUDIT_PROCTITLE", AuditProctitle, 1327},
		{"AUDIT_LANDLOCK_ACCESS", AuditLandlockAccess, 1423},
		{"AUDIT_LANDLOCK_DOMAIN", AuditLandlockDomain, 1424},
		{"AUDIT_NLGRP_READLOG", AuditNlgrpReadlog, 1},
		{"AUDIT_STATUS_ENABLED", AuditStatusEnabled, 1},
		{"AUDIT_STATUS_BACKLOG_LIMIT", AuditStatusBacklog, 0x10},
		{"LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON", LandlockLogNewExecOn, 2},
		{"SECCOMP_FILTER_FLAG_LOG", SeccompFilterFlagLog, 2},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}

func TestAuditStatusEncodeDecode(t *testing.T) {
	s := AuditStatus{Mask: AuditStatusEnabled | AuditStatusBacklog, Enabled: 1, BacklogLimit: 8192, Lost: 7, BacklogWaitTimeActual: 9}
	b := s.Encode()
	if len(b) != 44 {
		t.Fatalf("encoded %d bytes, want 44", len(b))
	}
	if got := binary.NativeEndian.Uint32(b[20:]); got != 8192 {
		t.Errorf("backlog_limit at offset 20 = %d, want 8192", got)
	}
	d, err := DecodeAuditStatus(b)
	if err != nil || d != s {
		t.Errorf("round trip: %+v, %v; want %+v", d, err, s)
	}
	// A kernel older than 5.10 sends 40 bytes, one before 4.x only 32.
	d, err = DecodeAuditStatus(b[:32])
	if err != nil || d.Lost != 7 || d.BacklogWaitTimeActual != 0 {
		t.Errorf("32-byte status: %+v, %v", d, err)
	}
	if _, err := DecodeAuditStatus(b[:31]); err == nil {
		t.Error("31-byte status decoded without error")
	}
}

func TestParseNetlink(t *testing.T) {
	rec := "audit(1796303767.186:18): domain=1974f968c blockers=fs.read_file path=\"/etc/hostname\" dev=\"vda\" ino=611"
	// The multicast path counts the header in nlmsg_len; the unicast one does not:
	// both must yield the whole text.
	for _, withHdr := range []bool{true, false} {
		b := make([]byte, 16+len(rec)+1)
		l := len(rec) + 1
		if withHdr {
			l += 16
		}
		binary.NativeEndian.PutUint32(b[0:], uint32(l))
		binary.NativeEndian.PutUint16(b[4:], AuditLandlockAccess)
		copy(b[16:], rec)
		m, err := ParseRecord(b)
		if err != nil {
			t.Fatalf("withHdr=%v: %v", withHdr, err)
		}
		if m.Type != AuditLandlockAccess || string(m.Data) != rec {
			t.Errorf("withHdr=%v: type %d text %q", withHdr, m.Type, m.Data)
		}
	}
	if _, err := ParseRecord(make([]byte, 15)); err == nil {
		t.Error("15-byte datagram parsed")
	}
	// Replies: an ack (NLMSG_ERROR, error 0) then a status, in one datagram.
	var b []byte
	for _, m := range []struct {
		typ     uint16
		payload []byte
	}{{unix.NLMSG_ERROR, make([]byte, 20)}, {AuditGet, (&AuditStatus{Enabled: 1}).Encode()}} {
		h := make([]byte, 16, 16+len(m.payload))
		binary.NativeEndian.PutUint32(h[0:], uint32(16+len(m.payload)))
		binary.NativeEndian.PutUint16(h[4:], m.typ)
		binary.NativeEndian.PutUint32(h[8:], 3)
		b = append(b, append(h, m.payload...)...)
	}
	msgs, err := ParseNetlink(b)
	if err != nil || len(msgs) != 2 || msgs[0].Type != unix.NLMSG_ERROR || msgs[1].Type != AuditGet || msgs[1].Seq != 3 {
		t.Fatalf("replies: %+v, %v", msgs, err)
	}
	if s, err := DecodeAuditStatus(msgs[1].Data); err != nil || s.Enabled != 1 {
		t.Errorf("status from reply: %+v, %v", s, err)
	}
}

// TestAuditGetStatus reads the status through a real socket (needs root in the
// initial namespaces and CONFIG_AUDIT).
func TestAuditGetStatus(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skipf("requires root (CAP_AUDIT_CONTROL), running as uid %d", os.Geteuid())
	}
	c, err := OpenAudit(0, 0)
	if errors.Is(err, unix.EPROTONOSUPPORT) {
		t.Skipf("kernel without CONFIG_AUDIT: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.GetStatus(5 * time.Second)
	if errors.Is(err, unix.ECONNREFUSED) {
		t.Skipf("not in the initial user and pid namespace: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if s.Enabled > 2 || s.BacklogLimit == 0 && s.Enabled == 1 {
		t.Errorf("implausible status %+v", s)
	}
	t.Logf("audit status: %+v", s)
}
