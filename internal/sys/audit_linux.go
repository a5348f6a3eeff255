//go:build linux

package sys

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"structs"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Audit netlink message and record types (include/uapi/linux/audit.h). Raw C names
// would read AUDIT_GET …; these are the Go names the rest of the project uses.
const (
	AuditGet             = unix.AUDIT_GET             // 1000: get the status
	AuditSet             = unix.AUDIT_SET             // 1001: set the status (mask says what)
	AuditUser            = unix.AUDIT_USER            // 1005: a user-space message (CAP_AUDIT_WRITE)
	AuditSyscall         = unix.AUDIT_SYSCALL         // 1300: the syscall of an event (pid, ppid, comm, exe)
	AuditConfigChange    = unix.AUDIT_CONFIG_CHANGE   // 1305: audit settings changed
	AuditEOE             = unix.AUDIT_EOE             // 1320: end of a multi-record event
	AuditSeccomp         = unix.AUDIT_SECCOMP         // 1326: a logged seccomp action
	AuditProctitle       = unix.AUDIT_PROCTITLE       // 1327
	AuditLandlockAccess  = unix.AUDIT_LANDLOCK_ACCESS // 1423: a denied Landlock access
	AuditLandlockDomain  = unix.AUDIT_LANDLOCK_DOMAIN // 1424: a Landlock domain allocated/deallocated
	AuditNlgrpReadlog    = 1                          // AUDIT_NLGRP_READLOG: the read-only multicast group
	AuditStatusEnabled   = unix.AUDIT_STATUS_ENABLED
	AuditStatusBacklog   = unix.AUDIT_STATUS_BACKLOG_LIMIT
	AuditMaxMessage      = 8970 // MAX_AUDIT_MESSAGE_LENGTH (kernel/audit.h): the largest record text
	SizeofAuditStatus    = 44   // sizeof(struct audit_status) since Linux 5.10 (backlog_wait_time_actual)
	LandlockLogNewExecOn = unix.LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON
	SeccompFilterFlagLog = unix.SECCOMP_FILTER_FLAG_LOG
)

// AuditStatus matches Linux include/uapi/linux/audit.h:struct audit_status (the
// 44-byte layout; older kernels send a prefix of it, and the decoder leaves the rest
// zero).
type AuditStatus struct {
	_                     structs.HostLayout
	Mask                  uint32 // AUDIT_STATUS_* bits of the fields that are valid (AUDIT_SET)
	Enabled               uint32 // 0 off, 1 on, 2 on and locked
	Failure               uint32 // failure-to-log action
	PID                   uint32 // pid of the registered audit daemon (0: none)
	RateLimit             uint32 // records per second (0: unlimited)
	BacklogLimit          uint32 // queued records before new ones are lost
	Lost                  uint32 // records lost since boot
	Backlog               uint32 // records waiting in the kernel's queue now
	FeatureBitmap         uint32 // union with the deprecated version field
	BacklogWaitTime       uint32
	BacklogWaitTimeActual uint32
}

// DecodeAuditStatus reads an audit_status payload (a prefix of it on older kernels).
func DecodeAuditStatus(b []byte) (AuditStatus, error) {
	var s AuditStatus
	if len(b) < 32 { // mask … backlog: present since the beginning
		return s, fmt.Errorf("audit_status of %d bytes, want at least 32", len(b))
	}
	f := [...]*uint32{&s.Mask, &s.Enabled, &s.Failure, &s.PID, &s.RateLimit, &s.BacklogLimit,
		&s.Lost, &s.Backlog, &s.FeatureBitmap, &s.BacklogWaitTime, &s.BacklogWaitTimeActual}
	for i, p := range f {
		if 4*i+4 > len(b) {
			break
		}
		*p = binary.NativeEndian.Uint32(b[4*i:])
	}
	return s, nil
}

// Encode returns the 44-byte audit_status payload for AUDIT_SET.
func (s *AuditStatus) Encode() []byte {
	b := make([]byte, SizeofAuditStatus)
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(s)), unsafe.Sizeof(*s)))
	return b
}

// AuditMessage is one netlink message from an audit socket: its type and payload
// (for records from ParseRecord, the text "audit(SEC.MSEC:SERIAL): fields…" with
// trailing NULs removed).
type AuditMessage struct {
	Type uint16
	Seq  uint32
	Data []byte
}

// ParseRecord reads a datagram of the audit multicast group: one record per
// datagram. Its nlmsg_len is not relied on (the kernel's unicast path leaves it
// short by the header's size, its multicast path counts the header): the record
// is the whole datagram after the header.
func ParseRecord(b []byte) (AuditMessage, error) {
	if len(b) < unix.NLMSG_HDRLEN {
		return AuditMessage{}, fmt.Errorf("netlink datagram of %d bytes: shorter than a header", len(b))
	}
	return AuditMessage{
		Type: binary.NativeEndian.Uint16(b[4:6]),
		Seq:  binary.NativeEndian.Uint32(b[8:12]),
		Data: trimNUL(b[unix.NLMSG_HDRLEN:]),
	}, nil
}

// ParseNetlink splits a datagram of replies (acks, AUDIT_GET) into its netlink
// messages; a length that overruns the datagram is clipped to it.
func ParseNetlink(b []byte) ([]AuditMessage, error) {
	var out []AuditMessage
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			l = len(b)
		}
		m := AuditMessage{
			Type: binary.NativeEndian.Uint16(b[4:6]),
			Seq:  binary.NativeEndian.Uint32(b[8:12]),
			Data: b[unix.NLMSG_HDRLEN:l],
		}
		out = append(out, m)
		al := (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if al >= len(b) {
			break
		}
		b = b[al:]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("netlink datagram of %d bytes: shorter than a header", len(b))
	}
	return out, nil
}

func trimNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// AuditConn is a NETLINK_AUDIT socket, non-blocking under Go's poller (reads honour
// SetReadDeadline and end at Close).
type AuditConn struct {
	f   *os.File
	rc  syscall.RawConn
	mu  sync.Mutex // one request at a time
	seq uint32
	buf []byte // request's receive buffer, reused under mu
}

// OpenAudit opens a NETLINK_AUDIT socket. With groups != 0 it joins those multicast
// groups (1<<(AuditNlgrpReadlog-1) for the read-only log: needs CAP_AUDIT_READ).
// rcvbuf > 0 sets the receive buffer (the kernel doubles it and enforces a
// minimum).
func OpenAudit(groups uint32, rcvbuf int) (*AuditConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_AUDIT)
	if err != nil {
		return nil, os.NewSyscallError("socket(AF_NETLINK, NETLINK_AUDIT)", err)
	}
	if rcvbuf > 0 {
		// SO_RCVBUFFORCE (CAP_NET_ADMIN) passes net.core.rmem_max; SO_RCVBUF is
		// capped by it.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf); err != nil {
				unix.Close(fd)
				return nil, os.NewSyscallError("setsockopt(SO_RCVBUF)", err)
			}
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError(fmt.Sprintf("bind(NETLINK_AUDIT, groups %#x)", groups), err)
	}
	f := os.NewFile(uintptr(fd), "netlink-audit")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &AuditConn{f: f, rc: rc}, nil
}

// Close closes the socket; a Recv in progress returns os.ErrClosed.
func (c *AuditConn) Close() error { return c.f.Close() }

// SetRcvBuf sets the socket's receive buffer (as OpenAudit's rcvbuf) on an open
// socket: a test shrinks a collector's once it has started, so that its start is
// not the part that overflows.
func (c *AuditConn) SetRcvBuf(n int) error {
	var serr error
	err := c.rc.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n); serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
		}
	})
	if err != nil {
		return err
	}
	return os.NewSyscallError("setsockopt(SO_RCVBUF)", serr)
}

// SetReadDeadline bounds Recv (zero time: none).
func (c *AuditConn) SetReadDeadline(t time.Time) error { return c.f.SetReadDeadline(t) }

// Recv reads one datagram into buf. A receive queue that overflowed since the last
// read returns an error matching unix.ENOBUFS (records were dropped; reading goes on).
func (c *AuditConn) Recv(buf []byte) (int, error) {
	var n int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, os.NewSyscallError("recvfrom(NETLINK_AUDIT)", rerr)
	}
	return n, nil
}

// send writes one request to the kernel (pid 0).
func (c *AuditConn) send(typ uint16, flags uint16, seq uint32, payload []byte) error {
	b := make([]byte, unix.NLMSG_HDRLEN+len(payload))
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	copy(b[unix.NLMSG_HDRLEN:], payload)
	var serr error
	err := c.rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return !errors.Is(serr, unix.EAGAIN)
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("sendto(NETLINK_AUDIT)", serr)
	}
	return nil
}

// request sends typ with NLM_F_ACK and waits (up to timeout) for the kernel's ack
// and, when want != 0, for a reply of type want. The kernel sends AUDIT_GET's reply
// from a kernel thread, so it may arrive after the ack: both are awaited, matched
// by sequence number. A negative ack is returned as its errno.
func (c *AuditConn) request(typ uint16, payload []byte, want uint16, timeout time.Duration) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	seq := c.seq
	if err := c.send(typ, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, payload); err != nil {
		return nil, err
	}
	if err := c.f.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	defer func() { _ = c.f.SetReadDeadline(time.Time{}) }()
	var reply []byte
	acked, replied := false, want == 0
	if c.buf == nil {
		c.buf = make([]byte, 16384)
	}
	buf := c.buf
	for !acked || !replied {
		n, err := c.Recv(buf)
		if err != nil {
			return nil, fmt.Errorf("audit request %d: waiting for the reply: %w", typ, err)
		}
		msgs, err := ParseNetlink(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Seq != seq {
				continue
			}
			switch {
			case m.Type == unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, fmt.Errorf("audit request %d: short netlink ack", typ)
				}
				if e := int32(binary.NativeEndian.Uint32(m.Data[:4])); e != 0 {
					return nil, syscall.Errno(-e)
				}
				acked = true
			case m.Type == want:
				reply, replied = append([]byte(nil), m.Data...), true
			}
		}
	}
	return reply, nil
}

// GetStatus asks the kernel for its audit status (AUDIT_GET; CAP_AUDIT_CONTROL).
func (c *AuditConn) GetStatus(timeout time.Duration) (AuditStatus, error) {
	b, err := c.request(AuditGet, nil, AuditGet, timeout)
	if err != nil {
		return AuditStatus{}, err
	}
	return DecodeAuditStatus(b)
}

// SetStatus sets the fields of s named by s.Mask (AUDIT_SET; CAP_AUDIT_CONTROL).
func (c *AuditConn) SetStatus(s AuditStatus, timeout time.Duration) error {
	_, err := c.request(AuditSet, s.Encode(), 0, timeout)
	return err
}

// SendUser logs text as an AUDIT_USER record (CAP_AUDIT_WRITE) and waits for the
// kernel's ack: the record is then in the kernel's queue, behind every record
// queued before it. The kernel drops records of this type while audit is off.
func (c *AuditConn) SendUser(text string, timeout time.Duration) error {
	// The kernel takes the payload as a C string: its last byte is overwritten
	// with a NUL, so one is added.
	_, err := c.request(AuditUser, append([]byte(text), 0), 0, timeout)
	return err
}
