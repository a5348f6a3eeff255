package spawner

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/templates"
)

// The launch protocol between the main process and a spawner runs over one
// SOCK_SEQPACKET socket pair: every message is one datagram holding a JSON object,
// and file descriptors travel beside it as SCM_RIGHTS. Datagram boundaries make a
// message and its fds arrive together, so no framing is needed.
//
//	main → spawner   hello (once), then launch requests
//	spawner → main   ack (once, at once), ready (once, after the restriction),
//	                 then per launch: started (with the pidfd) or failed, and
//	                 later exited (status and rusage)
//
// When kernel templates may be used, hello carries a second socket (KernelSock),
// read only by the kernel launcher: the main process sends it the kernel-backend
// launches while none is in flight, so that they reach the one thread that may
// spawn from the templates without a handoff between threads. Every reply still
// comes on the first socket; a launch the kernel launcher cannot take is answered
// "redirect" and sent again on the first socket (the userspace path).

// maxMessage bounds one protocol message; argv and environment together must fit.
const maxMessage = 1 << 20

// maxFDs bounds the descriptors passed with one message.
const maxFDs = 64

// hello configures a spawner before it restricts itself.
type hello struct {
	Profile  string        `json:"profile"`
	Landlock *LandlockPlan `json:"landlock"`
	// Containment is the profile's capability and seccomp setup.
	Containment Containment `json:"containment"`
	Tools       []ToolSpec  `json:"tools"`
	// KernelTemplates is "auto", "off" or "require"; KTCreate and KTSpawn override
	// the spawn_template syscall numbers (0: default).
	KernelTemplates string `json:"kernel_templates"`
	KTCreate        int    `json:"kt_create,omitempty"`
	KTSpawn         int    `json:"kt_spawn,omitempty"`
	// Launchers is the number of launcher threads (0: one). Kernel templates are
	// bound to the thread that created them, so with them there is only one.
	Launchers int `json:"launchers,omitempty"`
	// View is mounted first thing, in the spawner's own mount namespace.
	View *ToolView `json:"view,omitempty"`
	// NoLaunchLayer leaves out the per-launch Landlock layer (tests' controls only).
	NoLaunchLayer bool `json:"no_launch_layer,omitempty"`
	// KernelDenials makes each launch's Landlock layer, and the seccomp filter, log
	// what they refuse to the audit stream (docs/denials.md).
	KernelDenials bool `json:"kernel_denials,omitempty"`
	// Mounts is applied in the spawner's private mount namespace (it was started
	// with CLONE_NEWNS) before capabilities are dropped: repository metadata and
	// protect: paths (mounts.go, protect.go). nil: nothing to mount.
	Mounts *MountPlan `json:"mounts,omitempty"`
	// KernelSock: hello's one fd is the spawner's end of the kernel launches'
	// socket (see above).
	KernelSock bool `json:"kernel_sock,omitempty"`
}

// ToolSpec is a tool the spawner may launch, with its resolved path: given in
// SpawnerConfig.Tools and sent as is in hello.
type ToolSpec struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Hot  bool   `json:"hot"`
	// Lookup disables the template: the bare name Exec is looked up through
	// SearchPath on every launch, as a shell or os/exec would (a baseline for
	// benchmarks).
	Lookup     bool     `json:"lookup,omitempty"`
	Exec       string   `json:"exec,omitempty"`
	SearchPath []string `json:"search_path,omitempty"`
}

// ack is the spawner's first message, sent as soon as it has read hello and before
// anything slow: it shows that the binary runs as a spawner, so that the main
// process can tell within seconds a program that never serves (an embedding
// program without agentexec.ServeSpawner) from a spawner whose setup takes time.
type ack struct {
	// Spawner is SpawnerCommand; anything else is not an agentexec spawner of this
	// protocol.
	Spawner string `json:"spawner"`
}

// ready answers hello.
type ready struct {
	Pid       int              `json:"pid"`
	Err       string           `json:"err,omitempty"`
	Skipped   []string         `json:"skipped,omitempty"`
	Templates []TemplateStatus `json:"templates,omitempty"`
	Layers    []string         `json:"layers,omitempty"`
	Launchers int              `json:"launchers,omitempty"`
	// Degraded lists what the spawner could not set up as planned without
	// weakening the sandbox (a root the tool view could not idmap).
	Degraded []string `json:"degraded,omitempty"`
	// KernelSock: the kernel launcher reads the kernel launches' socket (kernel
	// templates are in use). Otherwise the main process closes its end and sends
	// every launch on the first socket.
	KernelSock bool `json:"kernel_sock,omitempty"`
}

// TemplateStatus reports a tool's template after the spawner prepared it (in
// ready, and Ready.Templates).
type TemplateStatus struct {
	Name    string            `json:"name"`
	Backend templates.Backend `json:"backend"`
	ELF     bool              `json:"elf"`
	Err     string            `json:"err,omitempty"`
}

// launchMsg asks for one launch. Fds carried beside it, in order: stdin (absent when
// StdinPath or NullStdin is set), stdout, stderr, the cgroup directory (when
// Cgroup), then NExtra extra fds for the child's fds 3, 4, ….
type launchMsg struct {
	ID        uint64   `json:"id"`
	Tool      string   `json:"tool"`
	Argv      []string `json:"argv"`
	Env       []string `json:"env"`
	Dir       string   `json:"dir"`
	StdinPath string   `json:"stdin_path,omitempty"`
	NullStdin bool     `json:"null_stdin,omitempty"`
	Cgroup    bool     `json:"cgroup,omitempty"`
	NExtra    int      `json:"n_extra,omitempty"`
	// Kernel asks for the kernel template backend; the cgroup fd is then an open
	// cgroup.procs (the child is placed after spawn, not by CLONE_INTO_CGROUP).
	Kernel bool `json:"kernel,omitempty"`
}

// Reply kinds.
const (
	replyStarted = "started"
	replyFailed  = "failed"
	replyExited  = "exited"
	// replyRedirect answers a launch sent on the kernel launches' socket that the
	// kernel launcher cannot take (no usable template, a working directory it
	// cannot open, …): no child exists; send it again on the first socket.
	replyRedirect = "redirect"
)

// reply is the spawner's answer about one launch.
type reply struct {
	ID   uint64 `json:"id"`
	Kind string `json:"kind"`
	Pid  int    `json:"pid,omitempty"`
	// Failed: the errno and text of the failure; Exec is set when exec itself failed
	// (the child existed but could not run the tool).
	Errno int    `json:"errno,omitempty"`
	Err   string `json:"err,omitempty"`
	Exec  bool   `json:"exec,omitempty"`
	// Started: how the child was launched.
	Backend  templates.Backend `json:"backend,omitempty"`
	Template templates.State   `json:"template,omitempty"`
	// PlacementNS is the kernel backend's delay between spawn and cgroup placement.
	PlacementNS int64 `json:"placement_ns,omitempty"`
	// Exited: the wait status and rusage of the child.
	Status  uint32 `json:"status,omitempty"`
	UtimeNS int64  `json:"utime_ns,omitempty"`
	StimeNS int64  `json:"stime_ns,omitempty"`
	MaxRSS  int64  `json:"maxrss_kb,omitempty"`
}

// socketPair makes the protocol's socket pair, with room for a full-size message
// in flight each way: SO_SNDBUFFORCE where the process may (CAP_NET_ADMIN), else
// SO_SNDBUF up to the host's net.core.wmem_max (a message larger than the buffer
// then fails to send with EMSGSIZE, reported as such).
func socketPair() ([2]int, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return pair, fmt.Errorf("socketpair: %w", err)
	}
	for _, fd := range pair {
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4*maxMessage) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4*maxMessage)
		}
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4*maxMessage) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4*maxMessage)
		}
	}
	return pair, nil
}

// encodeMsg marshals a message and bounds its size.
func encodeMsg(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode message: %w", err)
	}
	if len(b) > maxMessage {
		return nil, fmt.Errorf("message of %d bytes exceeds the %d-byte limit (argv and environment too large)", len(b), maxMessage)
	}
	return b, nil
}

// sendMsg writes v as one datagram with fds attached (main process side).
func sendMsg(c *net.UnixConn, v any, fds []int) error {
	b, err := encodeMsg(v)
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	n, oobn, err := c.WriteMsgUnix(b, oob, nil)
	if err != nil {
		return fmt.Errorf("sendmsg: %w", err)
	}
	if n != len(b) || oobn != len(oob) {
		return fmt.Errorf("sendmsg: short write (%d of %d bytes, %d of %d control bytes)", n, len(b), oobn, len(oob))
	}
	return nil
}

// errTruncated means a datagram or its control data did not fit the buffers.
var errTruncated = errors.New("message truncated")

// recvMsg reads one datagram into v and returns the fds that came with it, each
// close-on-exec (main process side). buf and oob are scratch buffers reused by the
// caller's loop.
func recvMsg(c *net.UnixConn, buf, oob []byte, v any) ([]int, error) {
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	return decodeMsg(buf[:n], oob[:oobn], flags, v)
}

// sendRaw and recvRaw are the spawner's side: blocking syscalls on the socket fd.
// recvRaw is called by every launcher thread, so that a request wakes a launcher
// thread directly rather than through the Go scheduler (a handoff to a locked thread
// costs ~0.1 ms here); sendRaw by the launcher threads and by the reaper goroutine,
// concurrently (see spawnerState.reply).
func sendRaw(fd int, v any, fds []int) error {
	b, err := encodeMsg(v)
	if err != nil {
		return err
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	for {
		err = unix.Sendmsg(fd, b, oob, nil, 0)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("sendmsg: %w", err)
	}
	return nil
}

func recvRaw(fd int, buf, oob []byte, v any) ([]int, error) {
	for {
		n, oobn, flags, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("recvmsg: %w", err)
		}
		return decodeMsg(buf[:n], oob[:oobn], flags, v)
	}
}

// decodeMsg parses a received datagram and its SCM_RIGHTS fds.
func decodeMsg(b, oob []byte, flags int, v any) ([]int, error) {
	var fds []int
	if len(oob) > 0 {
		msgs, perr := unix.ParseSocketControlMessage(oob)
		if perr != nil {
			return nil, fmt.Errorf("parse control message: %w", perr)
		}
		for _, m := range msgs {
			got, rerr := unix.ParseUnixRights(&m)
			if rerr != nil {
				continue
			}
			fds = append(fds, got...)
		}
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		closeAll(fds)
		return nil, errTruncated
	}
	if len(b) == 0 {
		closeAll(fds)
		return nil, os.ErrClosed
	}
	if err := json.Unmarshal(b, v); err != nil {
		closeAll(fds)
		return nil, fmt.Errorf("decode message: %w", err)
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}
