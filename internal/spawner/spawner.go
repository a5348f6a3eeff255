package spawner

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/osthread"
	"github.com/agentexec/agentexec/internal/templates"
)

// SpawnerConfig describes one profile's spawner process.
type SpawnerConfig struct {
	// Binary is the program run as the spawner (the agentexec binary, or an embedding
	// program that calls agentexec.ServeSpawner first thing in main).
	Binary string
	// Profile names the profile in errors and reports.
	Profile string
	// Tools are the profile's tools with resolved paths.
	Tools []ToolSpec
	// Landlock is the fitted ruleset (nil: no Landlock).
	Landlock *LandlockPlan
	// Containment is applied by the spawner: capabilities and no_new_privs before
	// Landlock, the seccomp filter after it (and after the launcher threads exist).
	Containment Containment
	// NetNS starts the spawner in a new, empty network namespace.
	NetNS bool
	// StarterSetup, when set, runs once on the thread that forks the spawner
	// process, before its first fork; an error fails StartSpawner. Per-thread
	// state it sets there is inherited by the spawner and by every restart of it:
	// the root package unshares a network namespace there and opens the egress
	// proxy's listener in it (egress_netns.go), with NetNS false.
	StarterSetup func() error
	// View is what the spawner mounts, in a mount namespace of its own, so that
	// the tools' identity can use roots it does not own (see ToolView).
	View *ToolView
	// NoLaunchLayer leaves out the per-launch Landlock layer (tests' controls only).
	NoLaunchLayer bool
	// KernelDenials makes the launches' Landlock layers and the seccomp filter log
	// their refusals (docs/denials.md).
	KernelDenials bool
	// Mounts, when set, starts the spawner in a private mount namespace
	// (CLONE_NEWNS), where it applies the plan before it restricts itself.
	Mounts *MountPlan
	// KernelTemplates is the policy's kernel_templates setting; KTCreate and KTSpawn
	// override the syscall numbers (0: default).
	KernelTemplates   string
	KTCreate, KTSpawn int
	// Launchers is the number of launcher threads the spawner forks from (0: one).
	// More than one lets launches in flight overlap their clone and execve; the
	// spawner uses one when kernel templates may be used.
	Launchers int
	// Stderr receives the spawner's own diagnostics (nil: discarded).
	Stderr io.Writer
	// Logger receives one line per spawner death (profile, pid, cause, launches
	// failed); nil: not logged. A spawner ended by Close is not a death.
	Logger *slog.Logger
	// AckTimeout bounds the wait for the spawner's first answer, which it sends as
	// soon as it runs (default DefaultAckTimeout): a binary that does not answer by
	// then is not serving as a spawner (ErrNotServed). StartTimeout bounds the rest
	// of the handshake, the spawner's setup until it is ready (default 10s).
	AckTimeout   time.Duration
	StartTimeout time.Duration
}

// DefaultAckTimeout is SpawnerConfig.AckTimeout's default.
// Five seconds: a test binary of tens of megabytes started in a loaded emulated
// guest took over one (the RFC kernel tier); the wait only matters on the error
// path (a program that never serves).
const DefaultAckTimeout = 5 * time.Second

// ErrNotServed is returned when the spawner binary did not answer as a spawner: an
// embedding program that does not call agentexec.ServeSpawner first thing in main,
// or a binary that is not agentexec (or of another version).
var ErrNotServed = errors.New("did not answer as an agentexec spawner")

// ErrSpawnerDied is returned for launches in flight when their spawner process died.
var ErrSpawnerDied = errors.New("spawner process died")

// ErrClosed is returned by a Spawner after Close.
var ErrClosed = errors.New("spawner closed")

// Spawner is the main process's handle on one profile's spawner process. A spawner
// that dies is restarted on the next launch; launches in flight when it died fail
// with ErrSpawnerDied.
type Spawner struct {
	cfg SpawnerConfig
	// starter is the OS thread that forks the spawner process: Pdeathsig fires when
	// the thread that forked a child exits, so the spawner must not be forked from a
	// thread the Go runtime (or an embedding program's LockOSThread) might end. Its
	// Close, at the Spawner's Close, ends the thread and so kills a spawner still
	// running.
	starter *osthread.Thread

	mu       sync.Mutex
	cur      *spawnerConn
	closed   bool
	restarts int
	ready    ready

	ids atomic.Uint64
}

// Ready is what a spawner reported after restricting itself.
type Ready struct {
	Pid       int
	Skipped   []string
	Templates []TemplateStatus
	Layers    []string
	// Launchers is the number of launcher threads the spawner started.
	Launchers int
	// Degraded lists what the spawner set up with less access than planned (a
	// root its tool view could not idmap).
	Degraded []string
}

// StartSpawner starts the spawner process and waits until it has restricted itself.
func StartSpawner(cfg SpawnerConfig) (*Spawner, error) {
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	starter, err := osthread.Start(cfg.StarterSetup)
	if err != nil {
		return nil, err
	}
	starter.Do(cfg.Containment.prepareStarter)
	s := &Spawner{cfg: cfg, starter: starter}
	if _, err := s.conn(); err != nil {
		s.starter.Close()
		return nil, err
	}
	return s, nil
}

// Ready returns the latest spawner's report.
func (s *Spawner) Ready() Ready {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Ready{Pid: s.ready.Pid, Skipped: s.ready.Skipped, Templates: s.ready.Templates, Layers: s.ready.Layers,
		Launchers: s.ready.Launchers, Degraded: s.ready.Degraded}
}

// Restarts counts spawner restarts after deaths.
func (s *Spawner) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// Pid returns the current spawner process's pid (0 if none is running).
func (s *Spawner) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return 0
	}
	return s.cur.pid
}

// conn returns the live connection, starting a spawner when there is none.
func (s *Spawner) conn() (*spawnerConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.cur != nil {
		select {
		case <-s.cur.dead:
			s.cur = nil
			s.restarts++
		default:
			return s.cur, nil
		}
	}
	c, r, err := s.start()
	if err != nil {
		return nil, fmt.Errorf("profile %s: start spawner: %w", s.cfg.Profile, err)
	}
	s.cur, s.ready = c, r
	return c, nil
}

func (s *Spawner) start() (*spawnerConn, ready, error) {
	var r ready
	pair, err := socketPair()
	if err != nil {
		return nil, r, err
	}
	childEnd := os.NewFile(uintptr(pair[1]), "agentexec-spawner-socket")
	defer childEnd.Close() // on the early returns; closed at once after the start
	mainEnd := os.NewFile(uintptr(pair[0]), "agentexec-main-socket")
	fc, err := net.FileConn(mainEnd)
	mainEnd.Close()
	if err != nil {
		return nil, r, fmt.Errorf("socket: %w", err)
	}
	conn := fc.(*net.UnixConn)
	// Kernel-backend launches get a socket of their own, read by the kernel
	// launcher alone (proto.go); its spawner end goes with hello.
	var kconn *net.UnixConn
	kEnd := -1
	if s.cfg.KernelTemplates != "off" {
		kpair, err := socketPair()
		if err != nil {
			conn.Close()
			return nil, r, err
		}
		kf := os.NewFile(uintptr(kpair[0]), "agentexec-main-kernel-socket")
		kfc, err := net.FileConn(kf)
		kf.Close()
		if err != nil {
			unix.Close(kpair[1])
			conn.Close()
			return nil, r, fmt.Errorf("kernel launches' socket: %w", err)
		}
		kconn, kEnd = kfc.(*net.UnixConn), kpair[1]
		defer func() {
			if kEnd >= 0 {
				unix.Close(kEnd)
			}
		}()
	}

	var tl *timeline
	if os.Getenv(TimelineEnv) == "1" {
		tl = newTimeline("main")
		tl.mark("start spawner")
		defer tl.flush(s.cfg.Stderr)
	}
	cmd := &exec.Cmd{
		Path:       s.cfg.Binary,
		Args:       []string{s.cfg.Binary, SpawnerCommand, fmt.Sprintf("--sock-fd=%d", sockFD)},
		Env:        []string{}, // the agent's environment (and secrets) stay with the agent
		Stderr:     s.cfg.Stderr,
		ExtraFiles: []*os.File{childEnd},
		SysProcAttr: &syscall.SysProcAttr{
			// Tied to the starter's thread, which never exits while the Spawner lives.
			Pdeathsig: syscall.SIGKILL,
			// Its own session and process group: a tool's kill(-pgid) of the agent's
			// group cannot reach it, and its seccomp filter protects pid == pgid.
			Setsid: true,
		},
	}
	if s.cfg.NetNS {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNET
	}
	if !s.cfg.View.Empty() || s.cfg.Mounts != nil {
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWNS
	}
	if tl != nil {
		cmd.Args = append(cmd.Args, timelineFlag)
	}
	var startErr error
	s.starter.Do(func() { startErr = cmd.Start() })
	tl.mark("forked and exec'd")
	// Only the spawner holds its end from now on: its exit is EOF here at once.
	childEnd.Close()
	if err := startErr; err != nil {
		conn.Close()
		if kconn != nil {
			kconn.Close()
		}
		return nil, r, fmt.Errorf("exec %s: %w", s.cfg.Binary, err)
	}
	c := &spawnerConn{
		profile: s.cfg.Profile,
		logger:  s.cfg.Logger,
		pid:     cmd.Process.Pid,
		cmd:     cmd,
		conn:    conn,
		kconn:   kconn,
		pending: map[uint64]*Child{},
		dead:    make(chan struct{}),
		exited:  make(chan struct{}),
	}
	h := hello{Profile: s.cfg.Profile, Landlock: s.cfg.Landlock, Containment: s.cfg.Containment, Tools: s.cfg.Tools,
		KernelTemplates: s.cfg.KernelTemplates, KTCreate: s.cfg.KTCreate, KTSpawn: s.cfg.KTSpawn, Launchers: s.cfg.Launchers,
		View: s.cfg.View, NoLaunchLayer: s.cfg.NoLaunchLayer, Mounts: s.cfg.Mounts, KernelDenials: s.cfg.KernelDenials,
		KernelSock: kconn != nil}
	// stop ends the process, after grace when it should exit by itself (its
	// status then says more than our SIGKILL would), and says how it ended.
	stop := func(grace time.Duration) string {
		conn.Close()
		if kconn != nil {
			kconn.Close()
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(grace):
			_ = cmd.Process.Kill()
			<-done
		}
		return cmd.ProcessState.String()
	}
	fail := func(err error) (*spawnerConn, ready, error) {
		stop(0)
		return nil, r, err
	}
	// notServed: the binary never answered as a spawner. A program started as a
	// spawner that did not call ServeSpawner exits at once with status 2 when it
	// calls agentexec.New; one that does something else is given AckTimeout.
	notServed := func(err error) (*spawnerConn, ready, error) {
		var detail string
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			detail = fmt.Sprintf("no answer within %v (%s)", s.cfg.AckTimeout, stop(0))
		case errors.Is(err, io.EOF), errors.Is(err, os.ErrClosed), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNRESET):
			detail = fmt.Sprintf("it ended without answering (%s)", stop(time.Second))
		case err != nil:
			detail = fmt.Sprintf("%v (%s)", err, stop(0))
		default:
			detail = fmt.Sprintf("its answer is not this version's spawner protocol (%s)", stop(0))
		}
		return nil, r, fmt.Errorf("%s %w: %s; an embedding program must call agentexec.ServeSpawner() first thing in main, or the runtime must be given an installed agentexec binary (WithSpawnerBinary)", s.cfg.Binary, ErrNotServed, detail)
	}
	var hfds []int
	if kEnd >= 0 {
		hfds = []int{kEnd}
	}
	err = sendMsg(conn, &h, hfds)
	if kEnd >= 0 {
		unix.Close(kEnd) // the spawner holds its own copy now
		kEnd = -1
	}
	if err != nil {
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
			return notServed(err)
		}
		return fail(fmt.Errorf("send hello: %w", err))
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	var a ack
	tl.mark("hello sent")
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.AckTimeout))
	fds, err := recvMsg(conn, buf, oob, &a)
	closeAll(fds)
	tl.mark("ack")
	if err != nil || a.Spawner != SpawnerCommand {
		return notServed(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(s.cfg.StartTimeout))
	fds, err = recvMsg(conn, buf, oob, &r)
	closeAll(fds)
	if err != nil {
		how := "it ended"
		if errors.Is(err, os.ErrDeadlineExceeded) {
			how = fmt.Sprintf("no ready within %v", s.cfg.StartTimeout)
		}
		return nil, r, fmt.Errorf("spawner %s failed during its setup: %s (%w; %s)", s.cfg.Binary, how, err, stop(time.Second))
	}
	_ = conn.SetReadDeadline(time.Time{})
	tl.mark("ready")
	if r.Err != "" {
		return fail(errors.New(r.Err))
	}
	if kconn != nil && !r.KernelSock {
		// No kernel templates in use: every launch goes on the first socket.
		kconn.Close()
		c.kconn = nil
	}
	go c.readLoop()
	go func() {
		_ = cmd.Wait()
		close(c.exited)
		c.markDead(ErrSpawnerDied)
	}()
	return c, r, nil
}

// Close ends the spawner process: it closes the socket, upon which the spawner kills
// and reaps what is left of its launches and exits (killed after closeGrace if not).
func (s *Spawner) Close() error {
	s.mu.Lock()
	s.closed = true
	c := s.cur
	s.cur = nil
	s.mu.Unlock()
	if c != nil {
		c.close()
	}
	s.starter.Close()
	return nil
}

// Kill kills the current spawner process (for tests of restart behaviour).
func (s *Spawner) Kill() {
	s.mu.Lock()
	c := s.cur
	s.mu.Unlock()
	if c != nil {
		_ = c.cmd.Process.Kill()
		<-c.dead
	}
}

// spawnerConn is one running spawner process and its socket.
type spawnerConn struct {
	profile string
	logger  *slog.Logger
	pid     int
	cmd     *exec.Cmd
	conn    *net.UnixConn
	// kconn carries kernel-backend launches to the kernel launcher (nil: none; see
	// proto.go). kernelInflight counts the launches sent on it whose exit (or
	// failure, or redirect) has not come back: a kernel launch is sent there only
	// when it is 0, since the kernel launcher runs one kernel child at a time.
	kconn          *net.UnixConn
	kernelInflight int

	mu      sync.Mutex
	pending map[uint64]*Child
	dead    chan struct{}
	err     error
	// closing is set by close: the end that follows is not a death.
	closing bool
	// exited is closed when the spawner process has exited and been waited for.
	exited chan struct{}
}

// closeGrace is how long close lets a spawner clean up after itself before it is
// killed: on EOF it kills and reaps what is left of its tool trees, the orphans
// reparented to it included (shutdown in spawner_proc.go), which a SIGKILL of the
// spawner would leave to the host's PID 1.
const closeGrace = 2 * time.Second

func (c *spawnerConn) close() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.conn.Close()
	if c.kconn != nil {
		c.kconn.Close()
	}
	select {
	case <-c.exited:
	case <-time.After(closeGrace):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	<-c.dead
}

func (c *spawnerConn) markDead(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.dead:
		return
	default:
	}
	c.err = err
	close(c.dead)
	c.conn.Close()
	if c.kconn != nil {
		c.kconn.Close()
	}
	failed := len(c.pending)
	for id, ch := range c.pending {
		delete(c.pending, id)
		ch.finish(reply{Kind: replyFailed}, fmt.Errorf("launch %d: %w", id, err))
	}
	if !c.closing && c.logger != nil {
		go c.logDeath(err, failed)
	}
}

// logDeath logs a spawner's death in one line: the profile, the pid, the cause
// (how the process ended, once it has been waited for; else the socket's error)
// and the launches in flight that failed with it. The next launch starts a new
// spawner.
func (c *spawnerConn) logDeath(err error, failed int) {
	cause := err.Error()
	select {
	case <-c.exited:
		cause = c.cmd.ProcessState.String() // "signal: killed", "exit status 2"
	case <-time.After(closeGrace):
	}
	c.logger.Warn("spawner died; the next launch starts a new one",
		"profile", c.profile, "pid", c.pid, "cause", cause, "launches_failed", failed)
}

func (c *spawnerConn) readLoop() {
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	for {
		var r reply
		fds, err := recvMsg(c.conn, buf, oob, &r)
		if err != nil {
			c.markDead(fmt.Errorf("%w: %w", ErrSpawnerDied, err))
			return
		}
		c.mu.Lock()
		ch := c.pending[r.ID]
		if ch != nil && (r.Kind != replyStarted) {
			delete(c.pending, r.ID)
			if ch.viaKernel {
				c.kernelInflight--
			}
		}
		c.mu.Unlock()
		if ch == nil {
			closeAll(fds)
			continue
		}
		switch r.Kind {
		case replyStarted:
			pidfd := -1
			if len(fds) > 0 {
				pidfd = fds[0]
				closeAll(fds[1:])
			}
			ch.start(r, pidfd)
		default:
			closeAll(fds)
			ch.finish(r, nil)
		}
	}
}

// LaunchSpec is one launch request to a spawner. The fds are the main process's;
// they are duplicated into the spawner by SCM_RIGHTS and stay open here.
type LaunchSpec struct {
	Tool string
	Argv []string
	Env  []string
	Dir  string
	// Stdin is an fd to use as the child's stdin; StdinPath a file the spawner opens
	// (inside its sandbox); with neither, /dev/null.
	Stdin     int
	StdinPath string
	Stdout    int
	Stderr    int
	// CgroupFD is an O_PATH fd of the child's cgroup (-1: the spawner's cgroup); with
	// Kernel, an fd open for writing on the cgroup's cgroup.procs.
	CgroupFD int
	// Kernel launches through the tool's kernel template (Ready reports which tools
	// have one).
	Kernel bool
	// Extra fds become the child's 3, 4, ….
	Extra []int
}

// Child is a launched process, as the main process sees it.
type Child struct {
	ID       uint64
	Pid      int
	PidFD    int // owned by the Child: closed by Release (guarded by fdMu after start)
	fdMu     sync.Mutex
	Backend  templates.Backend
	Template templates.State
	// PlacementDelay is the kernel backend's time between spawn and cgroup placement.
	PlacementDelay time.Duration
	// viaKernel: sent on the kernel launches' socket (spawnerConn.kernelInflight).
	viaKernel bool

	startOnce sync.Once
	started   chan struct{}
	doneOnce  sync.Once
	done      chan struct{}
	startR    reply
	exitR     reply
	err       error
}

func (ch *Child) start(r reply, pidfd int) {
	ch.startOnce.Do(func() {
		ch.startR = r
		ch.Pid, ch.PidFD, ch.Backend, ch.Template = r.Pid, pidfd, r.Backend, r.Template
		ch.PlacementDelay = time.Duration(r.PlacementNS)
		close(ch.started)
	})
}

func (ch *Child) finish(r reply, err error) {
	ch.doneOnce.Do(func() {
		ch.exitR, ch.err = r, err
		ch.startOnce.Do(func() {
			ch.startR, ch.PidFD = r, -1
			close(ch.started)
		})
		close(ch.done)
	})
}

// LaunchError is a launch the spawner could not make.
type LaunchError struct {
	Errno syscall.Errno
	// Exec is set when the failure is reported as the tool's (126/127 by errno): any
	// failure of the userspace backend's fork+exec, whether of execve, of the child's
	// setup before it (chdir, ...) or of the clone, which the errno cannot tell apart.
	Exec bool
	Msg  string
}

func (e *LaunchError) Error() string { return e.Msg }

// Unwrap returns the errno.
func (e *LaunchError) Unwrap() error { return e.Errno }

// Launch asks the spawner to start a child and waits until it runs (or failed).
func (s *Spawner) Launch(spec *LaunchSpec) (*Child, error) {
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	m := launchMsg{ID: s.ids.Add(1), Tool: spec.Tool, Argv: spec.Argv, Env: spec.Env, Dir: spec.Dir, NExtra: len(spec.Extra), Kernel: spec.Kernel}
	fds := make([]int, 0, 4+len(spec.Extra))
	switch {
	case spec.StdinPath != "":
		m.StdinPath = spec.StdinPath
	case spec.Stdin < 0:
		m.NullStdin = true
	default:
		fds = append(fds, spec.Stdin)
	}
	fds = append(fds, spec.Stdout, spec.Stderr)
	if spec.CgroupFD >= 0 {
		m.Cgroup = true
		fds = append(fds, spec.CgroupFD)
	}
	fds = append(fds, spec.Extra...)
	if len(fds) > maxFDs {
		return nil, fmt.Errorf("launch passes %d fds, at most %d", len(fds), maxFDs)
	}
	ch, err := c.send(&m, fds, spec.Kernel)
	if err != nil {
		return nil, fmt.Errorf("profile %s: %w", s.cfg.Profile, err)
	}
	<-ch.started
	if ch.startR.Kind == replyRedirect {
		// The kernel launcher could not take it (no child exists): the userspace
		// path, through the first socket.
		m.ID = s.ids.Add(1)
		if ch, err = c.send(&m, fds, false); err != nil {
			return nil, fmt.Errorf("profile %s: %w", s.cfg.Profile, err)
		}
		<-ch.started
	}
	if ch.startR.Kind == replyFailed {
		<-ch.done
		if ch.err != nil {
			return nil, ch.err
		}
		return nil, &LaunchError{Errno: syscall.Errno(ch.exitR.Errno), Exec: ch.exitR.Exec, Msg: ch.exitR.Err}
	}
	return ch, nil
}

// send sends one launch request: on the kernel launches' socket when kernel is set,
// the spawner reads one (kconn) and no other kernel launch is in flight there, else
// on the first socket.
func (c *spawnerConn) send(m *launchMsg, fds []int, kernel bool) (*Child, error) {
	ch := &Child{ID: m.ID, PidFD: -1, started: make(chan struct{}), done: make(chan struct{})}
	c.mu.Lock()
	select {
	case <-c.dead:
		c.mu.Unlock()
		return nil, c.err
	default:
	}
	conn := c.conn
	if kernel && c.kconn != nil && c.kernelInflight == 0 {
		conn, ch.viaKernel = c.kconn, true
		c.kernelInflight++
	}
	c.pending[m.ID] = ch
	c.mu.Unlock()
	if err := sendMsg(conn, m, fds); err != nil {
		c.mu.Lock()
		if _, ok := c.pending[m.ID]; ok {
			delete(c.pending, m.ID)
			if ch.viaKernel {
				c.kernelInflight--
			}
		}
		c.mu.Unlock()
		return nil, fmt.Errorf("send launch: %w", err)
	}
	return ch, nil
}

// Exit is how a child ended.
type Exit struct {
	// ExecError describes a kernel-template child's failed exec (its status is then
	// an exit with 127 or 126), or an ambiguous status ("" otherwise).
	ExecError string
	Status    unix.WaitStatus
	UserCPU   time.Duration
	SystemCPU time.Duration
	MaxRSSKiB int64
}

// Done is closed when the child's exit has been reported (or its spawner died).
func (ch *Child) Done() <-chan struct{} { return ch.done }

// Wait blocks until the spawner reports the child's exit.
func (ch *Child) Wait() (Exit, error) {
	<-ch.done
	if ch.err != nil {
		return Exit{}, ch.err
	}
	if ch.exitR.Kind != replyExited {
		return Exit{}, &LaunchError{Errno: syscall.Errno(ch.exitR.Errno), Msg: ch.exitR.Err}
	}
	return Exit{
		ExecError: ch.exitR.Err,
		Status:    unix.WaitStatus(ch.exitR.Status),
		UserCPU:   time.Duration(ch.exitR.UtimeNS),
		SystemCPU: time.Duration(ch.exitR.StimeNS),
		MaxRSSKiB: ch.exitR.MaxRSS,
	}, nil
}

// Signal sends sig to the child through its pidfd (no pid reuse race).
func (ch *Child) Signal(sig syscall.Signal) error {
	ch.fdMu.Lock()
	defer ch.fdMu.Unlock()
	if ch.PidFD < 0 {
		return fmt.Errorf("signal launch %d: no pidfd", ch.ID)
	}
	err := unix.PidfdSendSignal(ch.PidFD, sig, nil, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil // already exited
	}
	return err
}

// Release closes the pidfd; call it once the child has been waited for.
func (ch *Child) Release() {
	ch.fdMu.Lock()
	defer ch.fdMu.Unlock()
	if ch.PidFD >= 0 {
		unix.Close(ch.PidFD)
		ch.PidFD = -1
	}
}
