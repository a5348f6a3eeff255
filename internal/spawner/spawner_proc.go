package spawner

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/contain"
	"github.com/agentexec/agentexec/internal/osthread"
	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/internal/templates"
	"github.com/agentexec/agentexec/policy"
)

// SpawnerCommand is the hidden subcommand that turns a binary into a spawner. The
// main process runs `BINARY __agentexec_spawner --sock-fd=3`.
const SpawnerCommand = "__agentexec_spawner"

// sockFD is the spawner's end of the protocol socket (the first ExtraFiles entry).
const sockFD = 3

// IsSpawnerInvocation reports whether args (os.Args) ask this process to be a spawner.
func IsSpawnerInvocation(args []string) bool {
	return len(args) >= 2 && args[1] == SpawnerCommand
}

// SpawnerMain runs a spawner process and never returns. args are os.Args.
func SpawnerMain(args []string) {
	if len(args) == 3 && args[2] == userNSHoldFlag {
		holdUserNS()
	}
	fd := -1
	for _, a := range args[2:] {
		if a == timelineFlag {
			spawnerTimeline = newTimeline("spawner")
			spawnerTimeline.mark("package initialised", initTime)
			spawnerTimeline.mark("main")
		}
		if v, ok := strings.CutPrefix(a, "--sock-fd="); ok {
			n, err := strconv.Atoi(v)
			if err == nil {
				fd = n
			}
		}
	}
	if fd < 0 {
		fmt.Fprintf(os.Stderr, "agentexec spawner: missing --sock-fd=N (usage: %s --sock-fd=N)\n", SpawnerCommand)
		os.Exit(2)
	}
	if err := runSpawner(fd); err != nil {
		fmt.Fprintf(os.Stderr, "agentexec spawner: %v\n", err)
		os.Exit(1)
	}
	// The main process waits for this exit (spawnerConn.close): leave at once, past
	// os.Exit's hooks, which have nothing to flush here and, in a race-enabled
	// build, sleep a second.
	unix.Exit(0)
}

// spawnerState is the spawner process's view of itself after restriction.
type spawnerState struct {
	sock    int // the protocol socket (blocking)
	devNull int
	tools   map[string]*spawnTool
	// launchers are the threads launches are forked from (see setup); each reads
	// requests from the socket itself. launchers[0] made the kernel templates (it is
	// then the only one).
	launchers []*osthread.Thread
	// reaper waits for all children (nil: one goroutine per child, if it could not
	// be set up).
	reaper *reaper
	// launch is the per-launch isolation: the Landlock layer each userspace child
	// adds for itself and the identity it switches to (see isolation.go).
	isolation launchIsolation
	// kernelInUse: launcher 0 holds kernel templates and runs only their launches.
	kernelInUse bool
	// kernelBusy is held while a kernel-template child lives (see launchKernel).
	kernelBusy atomic.Bool
	// ksock is the kernel launches' socket (hello.KernelSock), read by the kernel
	// launcher alone (serveKernel); -1 when there is none, and kernel launches come
	// on sock and are handed to the kernel launcher.
	ksock int
	// kchild is the kernel child the kernel launcher waits for itself (ksock mode),
	// 0 when none; kmu orders its reaping before a kill at shutdown, so that the pid
	// is never signalled after it could be reused.
	kmu    sync.Mutex
	kchild int
	// kernelDirty: what the last kernel child left running could not all be
	// killed (killKernelLeftovers); the next kernel launch sweeps again first.
	kernelDirty atomic.Bool
	// ksys is the spawn_template syscall surface; ktools the kernel launcher's
	// state of each tool's kernel template (kernel.go). Used on launcher 0 only.
	ksys   templates.KernelSys
	ktools map[string]*kernelTool
	// kcwd is the kernel launcher thread's own working directory (kernel.go):
	// kernel children start in it, with no FCHDIR action. Used on launcher 0 only.
	kcwd kernelCwd
	// procDir is /proc, opened before the restriction when kernel templates may be
	// used: where the orphan list is missing (no CONFIG_PROC_CHILDREN),
	// killKernelLeftovers looks for them there. -1: none.
	procDir int
	// orphans reaps what the launches leave behind: the spawner is their subreaper
	// (orphans.go). nil if it could not be set up.
	orphans *orphanReaper
	// closing is set once the main process has gone: replies are no longer sent.
	closing atomic.Bool
}

func runSpawner(fd int) error {
	// Nothing the embedding program left open without O_CLOEXEC may reach a tool:
	// mark every fd above the socket close-on-exec before anything else.
	if err := unix.CloseRange(uint(fd)+1, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close_range: %w", err)
	}
	unix.CloseOnExec(fd)
	// A subreaper from the start, so that no orphan of a tool tree is ever left to
	// the host's PID 1; its children list is opened before the restriction.
	orphans, oerr := newOrphanReaper()
	if oerr != nil {
		fmt.Fprintf(os.Stderr, "agentexec spawner: %v; orphans of tool trees are not reaped\n", oerr)
	}
	// Tools start with default signal dispositions even when the agent ignored some
	// (nohup, a shell's traps): exec keeps SIG_IGN, so the spawner inherited them.
	if _, err := sys.ResetIgnoredSignals(); err != nil {
		return fmt.Errorf("reset ignored signals: %w", err)
	}
	// The socket stays blocking: each launcher thread sleeps in recvmsg.
	if err := unix.SetNonblock(fd, false); err != nil {
		return fmt.Errorf("socket fd %d: %w", fd, err)
	}
	buf := make([]byte, maxMessage+1)
	oob := make([]byte, unix.CmsgSpace(maxFDs*4))
	var h hello
	fds, err := recvRaw(fd, buf, oob, &h)
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	ksock := -1
	if h.KernelSock && len(fds) == 1 {
		ksock, fds = fds[0], nil // kept only if kernel templates are used (setup)
	}
	closeAll(fds)
	spawnerTimeline.mark("hello read")
	if err := sendRaw(fd, &ack{Spawner: SpawnerCommand}, nil); err != nil {
		return fmt.Errorf("send ack: %w", err)
	}

	st := &spawnerState{sock: fd, ksock: ksock, tools: map[string]*spawnTool{}, orphans: orphans}
	r := ready{Pid: os.Getpid()}
	if err := st.setup(&h, &r); err != nil {
		r.Err = err.Error()
		_ = sendRaw(fd, &r, nil)
		return err
	}
	spawnerTimeline.mark("ready")
	if err := sendRaw(fd, &r, nil); err != nil {
		return err
	}
	spawnerTimeline.flush(os.Stderr)
	if rp, err := newReaper(st.reaped); err != nil {
		fmt.Fprintf(os.Stderr, "agentexec spawner: %v; reaping with one goroutine per child\n", err)
	} else {
		st.reaper = rp
		go rp.run()
	}
	if st.orphans != nil {
		// Only now: setup waited for the children it made (os/exec) itself.
		go st.orphans.run()
	}
	// Every launcher thread reads the socket itself: a datagram and its fds go to
	// exactly one reader, and the kernel wakes one waiting reader per message, so
	// launches in flight fork from several threads at once (Go lets forks from
	// different threads proceed concurrently). The first loop to end ends the
	// spawner: the socket closed or broke for all of them.
	serving := st.launchers
	if st.kernelLauncher() != nil {
		serving = serving[1:] // launcher 0 only runs kernel-template launches
	}
	errs := make(chan error, len(serving)+1)
	if st.ksock >= 0 {
		// The kernel launcher reads the kernel launches' socket itself (kernel.go).
		kbuf, koob := make([]byte, maxMessage+1), make([]byte, len(oob))
		go st.kernelLauncher().Do(func() { errs <- st.serveKernel(kbuf, koob) })
	}
	for i, l := range serving {
		lbuf, loob := buf, oob
		if i > 0 {
			lbuf, loob = make([]byte, maxMessage+1), make([]byte, len(oob))
		}
		go l.Do(func() { errs <- st.serve(lbuf, loob) })
	}
	err = <-errs
	st.shutdown()
	return err
}

// shutdownGrace bounds the spawner's last clean-up (shutdown).
const shutdownGrace = time.Second

// shutdown runs when the main process has closed the socket (Runtime.Close): it
// kills the children still running and everything they left, and reaps them all, so
// that nothing of a tool tree outlives the spawner. (Without it the launched
// children would die by Pdeathsig when the spawner exits, and their descendants be
// reparented to the host's PID 1.) The main process gives it a moment before it
// kills the spawner (spawnerConn.close).
func (st *spawnerState) shutdown() {
	st.closing.Store(true)
	done := func() bool { return true }
	if st.reaper != nil {
		done = st.reaper.killAll
	}
	if st.ksock >= 0 {
		// The kernel child the kernel launcher waits for itself (waitKernelChild).
		others := done
		done = func() bool { return st.killKernelChild() && others() }
	}
	deadline := time.Now().Add(shutdownGrace)
	if st.orphans != nil {
		st.orphans.killAll(deadline, done)
		return
	}
	for !done() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// serve runs on a launcher thread until the main process goes away: it reads a
// request, forks the child from this thread, replies, and leaves the reaping to
// the reaper.
func (st *spawnerState) serve(buf, oob []byte) error {
	for {
		var m launchMsg
		fds, err := recvRaw(st.sock, buf, oob, &m)
		if err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, unix.ECONNRESET) {
				return nil // the main process went away: our children die by Pdeathsig
			}
			if errors.Is(err, unix.EBADF) || errors.Is(err, unix.ENOTSOCK) {
				return err
			}
			// A malformed message is the main process's bug; report and go on.
			fmt.Fprintf(os.Stderr, "agentexec spawner: %v\n", err)
			continue
		}
		st.launch(&m, fds)
	}
}

// setup opens what the spawner needs, then restricts the whole process: capabilities,
// no_new_privs, Landlock, the launcher threads (each with its own signal scope),
// seccomp (protecting every launcher thread's id), non-dumpable — in that order,
// before any launch.
func (st *spawnerState) setup(h *hello, r *ready) error {
	nul, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/null: %w", err)
	}
	st.devNull = nul
	st.procDir = -1
	if h.KernelTemplates != string(policy.KernelTemplatesOff) && st.orphans == nil {
		if fd, err := unix.Open("/proc", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			st.procDir = fd
		}
	}
	// Open each tool's template before the restriction: the exec roots may not grant
	// the spawner itself what preparing needs, and revalidation later uses one statx.
	for _, t := range h.Tools {
		tool := &spawnTool{name: t.Name, path: t.Path, lookup: t.Lookup, exec: t.Exec, searchPath: t.SearchPath}
		st.tools[t.Name] = tool
		if t.Hot && !t.Lookup {
			tool.prepare()
		}
	}
	spawnerTimeline.mark("tools opened")
	if !h.View.Empty() {
		// A mount namespace of our own (the main process started us with
		// CLONE_NEWNS): a slave of the host's before any mount, so that nothing
		// made here propagates back.
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
			return fmt.Errorf("mount namespace: make / a recursive slave: %w", err)
		}
		degraded, err := h.View.apply()
		if err != nil {
			return err
		}
		r.Degraded = degraded
	}
	// Repository metadata and protect: paths, read-only in the private mount
	// namespace (mounts.go); after the idmapped roots, whose mapping the binds
	// inherit, and while the spawner still has CAP_SYS_ADMIN.
	spawnerTimeline.mark("tool view")
	if h.Mounts != nil {
		if err := h.Mounts.apply(); err != nil {
			return fmt.Errorf("mounts: %w", err)
		}
	}
	spawnerTimeline.mark("protected mounts")
	layers, err := h.Containment.applyCreds()
	if err != nil {
		return err
	}
	spawnerTimeline.mark("capabilities, no_new_privs")
	r.Layers = layers
	if !h.View.Empty() {
		r.Layers = append(r.Layers, "tool-view")
	}
	if h.Landlock != nil && h.Landlock.Enabled {
		skipped, err := h.Landlock.restrictSelf()
		if err != nil {
			return fmt.Errorf("landlock: %w", err)
		}
		r.Skipped = skipped
		r.Layers = append(r.Layers, fmt.Sprintf("landlock-abi-%d", h.Landlock.ABI))
	}
	spawnerTimeline.mark("landlock")
	// Every launch is forked from one of a few locked launcher threads. With
	// Landlock ABI 6 each adds a signal-scope layer of its own, so that tools cannot
	// signal the spawner's other threads by their ids (nor the tools of the other
	// launchers); the seccomp filter protects the launcher threads themselves (a
	// tool shares its launcher's domain) and the pid. They also keep Pdeathsig
	// sound: the kernel sends it when the forking thread exits, and launcher threads
	// live as long as the spawner.
	var scope func() error
	if h.Landlock != nil && h.Landlock.Enabled && h.Landlock.ABI >= policy.LandlockABIScope {
		scope = contain.ScopeSignalsThisThread
	}
	// The main process probed already and sends "off" when the kernel lacks the
	// spawn_template syscalls.
	mayUseKernel := h.KernelTemplates != string(policy.KernelTemplatesOff)
	n := max(h.Launchers, 1)
	if mayUseKernel {
		// Kernel templates are bound to the thread that creates them, and their
		// children cannot add a Landlock layer of their own: launcher 0 is kept for
		// them alone (its scope layer is their domain), so that no userspace child
		// is ever nested below a kernel child's domain. The others serve the socket.
		n++
	}
	var tids []int
	for range n {
		l, err := osthread.Start(scope)
		if err != nil {
			return fmt.Errorf("launcher thread: %w", err)
		}
		st.launchers = append(st.launchers, l)
		tids = append(tids, l.TID())
	}
	r.Launchers = n
	spawnerTimeline.mark("launcher threads")
	layers, err = h.Containment.applySeccomp(tids, os.Getppid())
	if err != nil {
		return err
	}
	spawnerTimeline.mark("seccomp")
	r.Layers = append(r.Layers, layers...)
	// The per-launch layer's ruleset is made once; each child enforces it on itself.
	if st.isolation, err = newLaunchIsolation(h); err != nil {
		return err
	}
	r.Layers = append(r.Layers, st.isolation.layers()...)
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	// Kernel templates are made now, after the restriction: the kernel binds each to
	// the credentials of the thread that creates it. Unless the setting is "off", the
	// probe is repeated here, under this process's filter.
	var probe templates.Probe
	use := false
	if mayUseKernel {
		probe = templates.ProbeKernel(h.KTCreate, h.KTSpawn)
		if use, err = templates.UseKernel(h.KernelTemplates, probe); err != nil {
			return err
		}
	}
	if use && st.ksock < 0 {
		// The main process gives kernel launches a socket of their own whenever
		// kernel templates may be used (hello.KernelSock): they are read there only.
		return errors.New("kernel templates without the kernel launches' socket (hello.KernelSock)")
	}
	if use {
		st.kernelInUse = true
		ks, err := probe.Syscalls()
		if err != nil {
			return err
		}
		st.ksys, st.ktools = ks, map[string]*kernelTool{}
		// Created on launcher thread 0, which serves every kernel launch
		// (launchKernel) and nothing else, after it has taken the per-launch
		// Landlock layer (kernel children keep its credentials). A failure
		// (scripts, or any create error) leaves the tool on the userspace backend.
		var rerr error
		st.launchers[0].Do(func() {
			if rerr = st.isolation.restrictKernelLauncher(); rerr != nil {
				return
			}
			st.kcwd.setup()
			for _, t := range h.Tools {
				tool := st.tools[t.Name]
				if !t.Hot || tool.tmpl == nil || !tool.tmpl.ELF {
					continue
				}
				tool.kt, tool.ktErr = templates.NewKernel(ks, tool.tmpl.Path)
			}
		})
		if rerr != nil {
			return rerr
		}
	}
	if st.ksock >= 0 && !st.kernelInUse {
		unix.Close(st.ksock) // the main process closes its end on ready
		st.ksock = -1
	}
	r.KernelSock = st.ksock >= 0
	for _, t := range h.Tools {
		tool := st.tools[t.Name]
		r.Templates = append(r.Templates, tool.status())
	}
	return nil
}

// reply sends one reply. It is called concurrently, from every launcher thread and
// from the reaper (or the fallback reap goroutines), without a lock: on a
// SOCK_SEQPACKET socket each sendmsg queues one whole datagram with its fds
// atomically (it is never split or interleaved with another sender's), and the order
// that matters, a launch's started reply before its exited reply, holds because the
// started reply has been queued before the child is handed to the reaper (waitFor).
// Replies of different launches may arrive in any order; the main process matches
// them by id.
func (st *spawnerState) reply(m *reply, fds []int) {
	if st.closing.Load() {
		return // the main process is gone (shutdown)
	}
	if err := sendRaw(st.sock, m, fds); err != nil {
		fmt.Fprintf(os.Stderr, "agentexec spawner: reply to launch %d: %v\n", m.ID, err)
	}
}

// launch runs one request: fork+exec through the Go runtime's clone3 path, reply with
// the pid and pidfd, and hand the child to the reaper, which replies with the status.
// Kernel-backend launches come on a socket of their own (ksock, serveKernel); one
// arrives here only because another was in flight or the kernel launcher could not
// take it (redirect), and takes the userspace path.
func (st *spawnerState) launch(m *launchMsg, fds []int) {
	defer closeAll(fds)
	req, ok := st.parseLaunch(m, fds)
	if !ok {
		return
	}
	defer req.close()
	st.launchUserspace(m, req)
}

// launchReq is a launch request with its fds sorted out (parseLaunch).
type launchReq struct {
	tool *spawnTool
	// files are the child's fds 0, 1, 2, 3, …; cgroupFD the cgroup's (-1: none):
	// a directory, or cgroup.procs for a kernel-backend launch (launchMsg.Kernel).
	files    []uintptr
	cgroupFD int
	// stdin is the file opened for StdinPath (-1: none), closed by close.
	stdin int
}

func (r *launchReq) close() {
	if r.stdin >= 0 {
		unix.Close(r.stdin)
	}
}

// parseLaunch checks a request's fds and tool and opens its stdin file. On failure
// it has replied and returns false.
func (st *spawnerState) parseLaunch(m *launchMsg, fds []int) (req launchReq, ok bool) {
	req.stdin, req.cgroupFD = -1, -1
	fail := func(errno syscall.Errno, format string, args ...any) {
		st.reply(&reply{ID: m.ID, Kind: replyFailed, Errno: int(errno), Err: fmt.Sprintf(format, args...)}, nil)
	}
	want := 2 + m.NExtra
	if m.Cgroup {
		want++
	}
	if m.StdinPath == "" && !m.NullStdin {
		want++
	}
	if len(fds) != want {
		fail(unix.EINVAL, "launch %d: got %d fds, want %d", m.ID, len(fds), want)
		return req, false
	}
	tool, ok := st.tools[m.Tool]
	if !ok {
		fail(unix.ENOENT, "launch %d: tool %q is not in this spawner's profile", m.ID, m.Tool)
		return req, false
	}
	req.tool = tool
	rest := fds
	var stdin int
	switch {
	case m.NullStdin:
		stdin = st.devNull
	case m.StdinPath != "":
		// Opened here, inside the sandbox, so the profile's Landlock rules decide.
		in, err := unix.Open(m.StdinPath, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err != nil {
			fail(errnoOf(err), "open stdin %s: %v", m.StdinPath, err)
			return req, false
		}
		req.stdin, stdin = in, in
	default:
		stdin, rest = rest[0], rest[1:]
	}
	req.files = []uintptr{uintptr(stdin), uintptr(rest[0]), uintptr(rest[1])}
	rest = rest[2:]
	if m.Cgroup {
		req.cgroupFD, rest = rest[0], rest[1:]
	}
	for _, fd := range rest {
		req.files = append(req.files, uintptr(fd))
	}
	return req, true
}

// launchUserspace launches through the userspace path (clone3 + execve) on the
// calling launcher thread, never the kernel launcher: a userspace child forked
// there would be nested below the kernel children's domain.
func (st *spawnerState) launchUserspace(m *launchMsg, req launchReq) {
	fail := func(errno syscall.Errno, exec bool, format string, args ...any) {
		st.reply(&reply{ID: m.ID, Kind: replyFailed, Errno: int(errno), Exec: exec, Err: fmt.Sprintf(format, args...)}, nil)
	}
	tool, cgroupFD := req.tool, req.cgroupFD
	if m.Kernel && m.Cgroup {
		// The main process sent the cgroup's cgroup.procs for the kernel backend;
		// clone3 needs the directory.
		dfd, err := cgroupDirOfProcs(cgroupFD)
		if err != nil {
			fail(errnoOf(err), false, "launch %d: userspace path for a kernel-backend tool: %v", m.ID, err)
			return
		}
		defer unix.Close(dfd)
		cgroupFD = dfd
	}
	path, state := tool.resolve()
	pid, pidfd, err := st.isolation.forkExec(path, m.Argv, m.Dir, m.Env, req.files, cgroupFD) // on a launcher thread (serve)
	if err != nil {
		exec, msg := describeForkError(path, m.Dir, err)
		fail(errnoOf(err), exec, "%s", msg)
		return
	}
	backend := templates.BackendUserspace
	if tool.lookup {
		backend = templates.BackendNone
	}
	st.reply(&reply{ID: m.ID, Kind: replyStarted, Pid: pid, Backend: backend, Template: state}, []int{pidfd})
	st.waitFor(reaped{id: m.ID, pid: pid, pidfd: pidfd})
}

// waitFor hands a started child to the reaper, which reports its exit (always after
// the started reply, which was sent before). It owns pidfd.
func (st *spawnerState) waitFor(c reaped) {
	if st.reaper != nil {
		err := st.reaper.add(c)
		if err == nil {
			return
		}
		fmt.Fprintf(os.Stderr, "agentexec spawner: %v; reaping launch %d with wait4\n", err, c.id)
	}
	unix.Close(c.pidfd)
	go st.reap(c.id, c.pid)
}

// reaped reports a child the reaper collected.
func (st *spawnerState) reaped(c reaped, ws unix.WaitStatus, ru *unix.Rusage, err error) {
	st.reply(exitReply(c.id, c.pid, false, ws, ru, err), nil)
}

// reap waits for the child in wait4 and reports its status and rusage (the fallback
// when the reaper is not available).
func (st *spawnerState) reap(id uint64, pid int) {
	var ws unix.WaitStatus
	var ru unix.Rusage
	_, err := wait4(pid, &ws, 0, &ru)
	st.reply(exitReply(id, pid, false, ws, &ru, err), nil)
}

// exitReply is the exited (or failed) reply for a reaped child. A kernel-template
// child's failed exec shows as a raw 127/126 status, decoded here.
func exitReply(id uint64, pid int, kernel bool, ws unix.WaitStatus, ru *unix.Rusage, err error) *reply {
	if err != nil {
		return &reply{ID: id, Kind: replyFailed, Errno: int(errnoOf(err)), Err: fmt.Sprintf("wait4(%d): %v", pid, err)}
	}
	r := &reply{
		ID: id, Kind: replyExited, Pid: pid, Status: uint32(ws),
		UtimeNS: ru.Utime.Nano(),
		StimeNS: ru.Stime.Nano(),
		MaxRSS:  ru.Maxrss,
	}
	if kernel {
		cs := templates.DecodeKernelWaitStatus(syscall.WaitStatus(ws))
		switch {
		case cs.ExecFailed:
			r.Status = uint32(cs.ExitCode) << 8 // an ordinary exit with the shell's status
			r.Exec, r.Err = true, cs.Message
		case cs.Ambiguous:
			r.Err = cs.Message
		}
	}
	return r
}

// launchKernel launches through the tool's kernel template, on the kernel launcher
// (launcher 0), holding kernelBusy, and hands the started child to wait (the kernel
// launcher waits for it itself: launchFromKernelSock). req.cgroupFD, when set, is the launch
// cgroup's cgroup.procs, opened by the main process. It returns false, with no child made,
// nothing replied and kernelBusy released, when the launch must take the userspace
// path instead: the tool has no usable kernel template (lost when its binary was
// removed or replaced by a script; kernelPath brings it back), the working
// directory cannot be opened for FCHDIR, what the last kernel child left could not
// be killed, or the spawn failed in a way the userspace path does not (fallsBack).
func (st *spawnerState) launchKernel(m *launchMsg, req launchReq, wait func(reaped)) (handled bool) {
	tool, files, cgroupFD := req.tool, req.files, req.cgroupFD
	started := false
	defer func() {
		if !started {
			st.kernelBusy.Store(false)
		}
	}()
	if st.kernelDirty.Load() {
		if !st.killKernelLeftovers() {
			return false
		}
		st.kernelDirty.Store(false)
	}
	kt, back := st.kernelPath(tool)
	if kt == nil {
		return false
	}
	dirfd, err := st.kcwd.enter(m.Dir)
	if err != nil {
		return false
	}
	if dirfd >= 0 {
		defer unix.Close(dirfd)
	}
	spec := templates.SpawnSpec{Argv: m.Argv, Envp: m.Env, Stdin: int(files[0]), Stdout: int(files[1]), Stderr: int(files[2]),
		StdinPath: m.StdinPath, DirFD: dirfd, ResetSignals: true}
	for _, f := range files[3:] {
		spec.ExtraFDs = append(spec.ExtraFDs, int(f))
	}
	pid, pidfd, recreated, delay, err := spawnKernel(kt, kernelSpawn{spec: spec, procsFD: cgroupFD})
	if err != nil {
		if lost, ok := fallsBack(err); ok {
			if lost {
				st.kernelLost(tool, err)
			}
			return false
		}
		st.reply(&reply{ID: m.ID, Kind: replyFailed, Errno: int(errnoOf(err)), Err: fmt.Sprintf("%s: %v", kt.Path(), err)}, nil)
		return true
	}
	state := templates.StateHit
	if recreated || back {
		state = templates.StateRecreated
	}
	started = true // kernelBusy is released when the child is reaped (waitKernelChild)
	st.reply(&reply{ID: m.ID, Kind: replyStarted, Pid: pid, Backend: templates.BackendKernel, Template: state, PlacementNS: delay.Nanoseconds()}, []int{pidfd})
	wait(reaped{id: m.ID, pid: pid, pidfd: pidfd})
	return true
}

// kernelLauncher is the launcher thread that holds the kernel templates and runs
// their launches, nil when kernel templates are not in use.
func (st *spawnerState) kernelLauncher() *osthread.Thread {
	if !st.kernelInUse {
		return nil
	}
	return st.launchers[0]
}

func errnoOf(err error) syscall.Errno {
	errno, _ := errors.AsType[syscall.Errno](err)
	return errno
}
