package spawner

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// seqpacketPair returns the two ends of the protocol's socket: the main process's
// (a *net.UnixConn) and the spawner's (a raw fd).
func seqpacketPair(t *testing.T) (*net.UnixConn, int) {
	t.Helper()
	fds, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "main-end")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); unix.Close(fds[1]) })
	return c.(*net.UnixConn), fds[1]
}

func TestProtoRoundTripWithFDs(t *testing.T) {
	main, sp := seqpacketPair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	msg := launchMsg{ID: 7, Tool: "cat", Argv: []string{"cat", "-n"}, Env: []string{"A=1"}, Dir: "/ws", Cgroup: true}
	if err := sendMsg(main, &msg, []int{int(w.Fd())}); err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, maxMessage), make([]byte, unix.CmsgSpace(maxFDs*4))
	var got launchMsg
	fds, err := recvRaw(sp, buf, oob, &got)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != 7 || got.Tool != "cat" || strings.Join(got.Argv, " ") != "cat -n" || !got.Cgroup || got.Dir != "/ws" {
		t.Errorf("received %+v, sent %+v", got, msg)
	}
	if len(fds) != 1 {
		t.Fatalf("received %d fds, want 1", len(fds))
	}
	// The fd is a working duplicate of the pipe's write end, close-on-exec.
	if flags, err := unix.FcntlInt(uintptr(fds[0]), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("received fd flags %#x, %v: want FD_CLOEXEC", flags, err)
	}
	if _, err := unix.Write(fds[0], []byte("x")); err != nil {
		t.Fatal(err)
	}
	unix.Close(fds[0])
	b := make([]byte, 1)
	if n, err := r.Read(b); n != 1 || b[0] != 'x' {
		t.Errorf("read through the passed fd: %q, %v", b[:n], err)
	}

	// And back: the spawner's reply reaches the main process.
	if err := sendRaw(sp, &reply{ID: 7, Kind: replyStarted, Pid: 42}, nil); err != nil {
		t.Fatal(err)
	}
	var rep reply
	if fds, err := recvMsg(main, buf, oob, &rep); err != nil || len(fds) != 0 || rep.ID != 7 || rep.Kind != replyStarted || rep.Pid != 42 {
		t.Errorf("reply %+v, fds %v, %v", rep, fds, err)
	}
}

func TestProtoRefusesOversizeMessages(t *testing.T) {
	main, _ := seqpacketPair(t)
	big := launchMsg{Tool: "cat", Env: []string{"X=" + strings.Repeat("a", maxMessage)}}
	err := sendMsg(main, &big, nil)
	if err == nil || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("sendMsg of more than %d bytes: %v, want an error naming the limit", maxMessage, err)
	}
	// Control: just under the limit goes through (the pair's buffers have room
	// for it: SO_SNDBUFFORCE as root, SO_SNDBUF up to wmem_max otherwise).
	small := launchMsg{Tool: "cat", Env: []string{"X=" + strings.Repeat("a", maxMessage-64)}}
	if err := sendMsg(main, &small, nil); err != nil {
		t.Fatalf("sendMsg under the limit: %v", err)
	}
}

// A datagram larger than the reader's buffer, or fds beyond its control buffer,
// is refused whole, and the fds that did arrive are closed (none leak).
func TestProtoTruncatedMessageClosesFDs(t *testing.T) {
	main, sp := seqpacketPair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	before := countFDs(t)
	if err := sendMsg(main, &launchMsg{Tool: strings.Repeat("t", 200)}, []int{int(w.Fd()), int(w.Fd())}); err != nil {
		t.Fatal(err)
	}
	var got launchMsg
	// A buffer too small for the datagram, and room for one fd only.
	_, err = recvRaw(sp, make([]byte, 64), make([]byte, unix.CmsgSpace(4)), &got)
	if !errors.Is(err, errTruncated) {
		t.Fatalf("recvRaw into small buffers: %v, want errTruncated", err)
	}
	if after := countFDs(t); after != before {
		t.Errorf("open fds %d before, %d after a truncated message: the fds that arrived must be closed", before, after)
	}
	// The connection still works for the next message.
	if err := sendMsg(main, &launchMsg{ID: 2, Tool: "x"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := recvRaw(sp, make([]byte, 4096), make([]byte, 64), &got); err != nil || got.ID != 2 {
		t.Errorf("next message: %+v, %v", got, err)
	}
}

func TestProtoEOFAndGarbage(t *testing.T) {
	main, sp := seqpacketPair(t)
	var got launchMsg
	if _, err := unix.Write(int(mustFD(t, main)), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := recvRaw(sp, make([]byte, 4096), make([]byte, 64), &got); err == nil || !strings.Contains(err.Error(), "decode message") {
		t.Errorf("garbage datagram: %v, want a decode error", err)
	}
	main.Close()
	if _, err := recvRaw(sp, make([]byte, 4096), make([]byte, 64), &got); !errors.Is(err, os.ErrClosed) {
		t.Errorf("peer closed: %v, want os.ErrClosed", err)
	}
}

func mustFD(t *testing.T, c *net.UnixConn) uintptr {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd uintptr
	if err := rc.Control(func(f uintptr) { fd = f }); err != nil {
		t.Fatal(err)
	}
	return fd
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
