package spawner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/internal/templates"
)

// kernelSpawn is one launch through a kernel template.
type kernelSpawn struct {
	spec    templates.SpawnSpec
	procsFD int // cgroup.procs of the launch's cgroup, opened by the main process; -1 for none
}

// spawnKernel launches through a kernel template, then writes the child's pid into
// its cgroup at once: the kernel call has no way to place the child, so it starts in
// the spawner's cgroup and is moved right after (the delay is returned). The move
// takes the cgroup threadgroup rwsem for writing, which waits for an RCU grace
// period (milliseconds) unless the cgroup2 hierarchy is mounted with favordynmods
// (docs/templates.md, "Placement costs a grace period").
//
// The kernel lets only the credentials that created a template spawn from it, and
// credentials are per thread, so it must be called on the thread that created kt:
// the spawner's kernel launcher (launcher 0), which creates every kernel template
// after its restriction is complete.
//
// When the placement fails the child is killed and reaped here, and the error is
// returned with no child left (pid and pidfd -1).
func spawnKernel(kt *templates.KernelTemplate, s kernelSpawn) (pid, pidfd int, recreated bool, delay time.Duration, err error) {
	pid, pidfd, recreated, err = kt.Spawn(s.spec)
	if err != nil || s.procsFD < 0 {
		return pid, pidfd, recreated, delay, err
	}
	start := time.Now()
	_, werr := unix.Write(s.procsFD, []byte(strconv.Itoa(pid)))
	delay = time.Since(start)
	if werr != nil {
		// An unplaced child would escape its limits: kill it before it does more.
		// (kill by pid: the child is not reaped yet, and the spawner's own seccomp
		// filter refuses pidfd_send_signal.) It is this thread's child: reap it.
		_ = unix.Kill(pid, syscall.SIGKILL)
		var ws unix.WaitStatus
		_, _ = wait4(pid, &ws, unix.WALL, nil)
		unix.Close(pidfd)
		return -1, -1, recreated, delay, fmt.Errorf("place pid %d in its cgroup: write cgroup.procs: %w", pid, werr)
	}
	return pid, pidfd, recreated, delay, nil
}

// kernelTool is what the kernel launcher knows of one tool beyond its template
// (spawnTool.kt). It is used on the kernel launcher only.
type kernelTool struct {
	// lost: the tool's kernel template could not be (re)created (the binary was
	// removed, or replaced by a script); its launches take the userspace path until
	// the file at the path changes again.
	lost bool
	// lostID is the identity of the file at the path when the template was lost or
	// last tried (zero: no file there).
	lostID templates.Identity
	why    error
}

// kernelPath returns the tool's usable kernel template, or nil when this launch
// must take the userspace path. A lost template is tried again, with one statx per
// launch, once the file at its path differs from what it was when it was lost: a
// binary restored (or any new ELF file) brings the tool back to the kernel backend,
// reported as "recreated". Runs on the kernel launcher.
func (st *spawnerState) kernelPath(tool *spawnTool) (kt *templates.KernelTemplate, recreated bool) {
	if tool.kt != nil {
		return tool.kt, false
	}
	k := st.ktools[tool.name]
	if k == nil || !k.lost {
		return nil, false // never had one (not hot, a script, or create failed at start)
	}
	id, err := templates.IdentityOf(k.path(tool))
	if err != nil {
		id = templates.Identity{}
	}
	if id == k.lostID {
		return nil, false
	}
	k.lostID = id
	if err != nil {
		return nil, false
	}
	nk, err := templates.NewKernel(st.ksys, k.path(tool))
	if err != nil {
		k.why = err
		return nil, false
	}
	tool.kt, k.lost, k.why = nk, false, nil
	return nk, true
}

func (k *kernelTool) path(tool *spawnTool) string {
	if tool.tmpl != nil {
		return tool.tmpl.Path
	}
	return tool.path
}

// kernelLost takes a tool off the kernel backend after its template could not be
// recreated (Spawn closed it); kernelPath brings it back.
func (st *spawnerState) kernelLost(tool *spawnTool, why error) {
	k := st.ktools[tool.name]
	if k == nil {
		k = &kernelTool{}
		st.ktools[tool.name] = k
	}
	path := k.path(tool)
	if tool.kt != nil {
		path = tool.kt.Path()
		_ = tool.kt.Close()
		tool.kt = nil
	}
	id, err := templates.IdentityOf(path)
	if err != nil {
		id = templates.Identity{}
	}
	k.lost, k.lostID, k.why = true, id, why
}

// fallsBack reports whether a failed kernel spawn (no child exists) should be
// retried on the userspace path rather than failed: the template could not be
// recreated (ErrNotELF for a script, ENOENT for a removed binary: the userspace path
// then runs the script or reports 127, as it does for any tool), or the launch needs
// more actions than the kernel takes (E2BIG: many extra fds).
func fallsBack(err error) (lost bool, ok bool) {
	if _, isCreate := errors.AsType[*templates.KernelCreateError](err); isCreate {
		return true, true
	}
	return false, errors.Is(err, unix.E2BIG)
}

// kernelCwd is the kernel launcher thread's working directory. The RFC's spawn
// makes its child without CLONE_FS, so the child starts in a copy of the calling
// thread's: once the kernel launcher has an fs_struct of its own (unshare
// CLONE_FS, setup), a launch enters its directory with a chdir on the launcher
// (enter), and repeated launches in the same directory (the workspace, nearly
// always) cost one stat each, where an FCHDIR action needed the directory opened,
// readable, for every launch (openKernelDir). chdir needs search permission only,
// as the userspace child's own chdir does.
type kernelCwd struct {
	own      bool   // the thread has its own fs_struct; else every launch uses FCHDIR
	orig     string // the spawner's working directory, for launches that name none
	path     string // the directory the thread is in, as last entered ("" when unsure)
	dev, ino uint64 // and its identity: a path that resolves elsewhere now is entered again
}

// setup gives the kernel launcher a working directory of its own. Runs on the
// kernel launcher, which never leaves its OS thread. Where the unshare is refused
// every launch keeps using FCHDIR.
func (c *kernelCwd) setup() {
	orig, err := os.Getwd()
	if err != nil {
		return
	}
	if unix.Unshare(unix.CLONE_FS) != nil {
		return
	}
	c.own, c.orig = true, orig
}

// enter makes dir the working directory of the next kernel child: on a thread with
// its own working directory it returns templates.NoFD after entering dir (or
// finding itself there already, by dev and inode, which the thread's reference to
// its directory keeps from being reused); otherwise the fd for FCHDIR
// (openKernelDir). An error leaves the launch to the userspace path. Runs on the
// kernel launcher.
func (c *kernelCwd) enter(dir string) (int, error) {
	if !c.own {
		return openKernelDir(dir)
	}
	if dir == "" {
		dir = c.orig
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return -1, &os.PathError{Op: "stat working directory", Path: dir, Err: err}
	}
	if c.path == dir && st.Dev == c.dev && st.Ino == c.ino {
		return templates.NoFD, nil
	}
	c.path = ""
	if err := unix.Chdir(dir); err != nil {
		return -1, &os.PathError{Op: "chdir (kernel launcher)", Path: dir, Err: err}
	}
	// What chdir entered, which a rename after the stat could have changed: the
	// child starts there either way, as it would in what an open made now names.
	if err := unix.Stat(".", &st); err != nil {
		return -1, &os.PathError{Op: "stat", Path: dir, Err: err}
	}
	c.path, c.dev, c.ino = dir, st.Dev, st.Ino
	return templates.NoFD, nil
}

// openKernelDir opens the launch's working directory for the FCHDIR action. The
// RFC's FCHDIR looks the fd up with fdget, which skips O_PATH files (fchdir(2)
// itself takes them), so the fd must be a real open: O_RDONLY|O_DIRECTORY. That
// needs what an O_PATH open does not: Landlock's READ_DIR on the directory in the
// spawner's domain and DAC read permission. Where they are missing the caller takes
// the userspace path, whose chdir needs only search permission.
func openKernelDir(dir string) (int, error) {
	if dir == "" {
		return templates.NoFD, nil
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open working directory (O_RDONLY|O_DIRECTORY, for FCHDIR)", Path: dir, Err: err}
	}
	return fd, nil
}

// cgroupDirOfProcs returns an O_PATH fd of the cgroup directory whose cgroup.procs
// procsFD is: a launch the main process sent for the kernel backend carries only
// that file (the kernel child is placed by writing its pid), and when it takes the
// userspace path instead, clone3 needs the directory (CLONE_INTO_CGROUP). The
// directory is found through the fd's /proc link and checked to hold that very
// file. O_PATH opens and stat are not subject to Landlock's file access rights.
func cgroupDirOfProcs(procsFD int) (int, error) {
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(procsFD))
	if err != nil {
		return -1, fmt.Errorf("cgroup.procs fd %d: %w", procsFD, err)
	}
	if filepath.Base(link) != "cgroup.procs" || !filepath.IsAbs(link) {
		return -1, fmt.Errorf("cgroup.procs fd %d links to %q, not a cgroup.procs file", procsFD, link)
	}
	dir := filepath.Dir(link)
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("cgroup directory %s: %w", dir, err)
	}
	var a, b unix.Stat_t
	if err := unix.Fstat(procsFD, &a); err == nil {
		err = unix.Fstatat(dfd, "cgroup.procs", &b, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && (a.Dev != b.Dev || a.Ino != b.Ino) {
			err = errors.New("it holds another cgroup.procs (the cgroup was replaced)")
		}
		if err != nil {
			unix.Close(dfd)
			return -1, fmt.Errorf("cgroup directory %s: %w", dir, err)
		}
	} else {
		unix.Close(dfd)
		return -1, fmt.Errorf("cgroup.procs fd %d: %w", procsFD, err)
	}
	return dfd, nil
}

// restrictKernelLauncher gives the kernel launcher thread (and so every kernel
// child, which keeps that thread's credentials) the per-launch Landlock layer a
// userspace child adds for itself between clone and exec. The RFC's spawn has no
// action that could add it in the child, so it is enforced once on the thread,
// before the templates are made (they are bound to the credentials that result).
// Kernel children then live in a domain that is a sibling of every userspace
// launch's, with Landlock ABI 6 as with ABI 1-5 (where the launcher threads have no
// signal-scope layer of their own). Runs on the kernel launcher.
func (li *launchIsolation) restrictKernelLauncher() error {
	if li.ruleset < 0 {
		return nil
	}
	if err := ll.LandlockRestrictSelf(li.ruleset, 0); err != nil {
		return fmt.Errorf("kernel launcher: per-launch Landlock layer: %w", err)
	}
	return nil
}

// kernelLeftoverGrace bounds how long the kernel launcher waits for what a kernel
// child left running to die before it takes the next kernel launch.
const kernelLeftoverGrace = time.Second

// killKernelLeftovers kills what an exited kernel-template child left running, so
// that the next kernel child, which shares the kernel launcher's domain, never meets
// it: kernel children run one at a time, and Landlock keeps launches apart by
// domain, not by process. What the child left is reparented to the spawner (a
// subreaper) when it exits, before the child is reaped: it is in the orphan list,
// or, on a kernel without that list (CONFIG_PROC_CHILDREN), among the pids in
// /proc. Whether a process is in the kernel launcher's domain (or below it) is asked
// of Landlock itself: a signal from the kernel launcher thread reaches exactly
// those when the domain scopes signals (ABI 6); a pid reused by a process elsewhere
// is out of reach the same way. Those are killed and reaped, their own children in
// turn, until none is left or the grace ends (false: some remain). Userspace
// launches' processes, in sibling domains, are not touched. Runs on the kernel
// launcher.
func (st *spawnerState) killKernelLeftovers() bool {
	if noChildren() {
		return true // nothing of any launch is left (see noChildren)
	}
	if st.isolation.ruleset < 0 || st.isolation.scoped&ll.ScopeSignal == 0 {
		// No signal scope to tell domains apart: the launch's cgroup kill (the
		// main process, at the tool's exit) is all there is.
		return true
	}
	var list func() ([]int, error)
	switch {
	case st.orphans != nil:
		o := st.orphans
		o.mu.Lock() // only the orphan reaper, whose lock this is, reaps its pids
		defer o.mu.Unlock()
		list = o.list
	case st.procDir >= 0:
		list = st.procPids
	default:
		return true
	}
	self := os.Getpid()
	deadline := time.Now().Add(kernelLeftoverGrace)
	for {
		pids, err := list()
		if err != nil {
			fmt.Fprintf(os.Stderr, "agentexec spawner: kernel launch leftovers: %v\n", err)
			return false
		}
		found := false
		for _, pid := range pids {
			if pid == self {
				continue
			}
			if unix.Kill(pid, 0) != nil {
				continue // another domain (or gone)
			}
			// In the kernel launcher's domain, where no tracked child lives now (the
			// last kernel child was reaped): reap it if it is an exited child of ours
			// (a leftover reparented here). Only such pids are waited for, so a
			// userspace launch's status is never taken from the reaper.
			var ws unix.WaitStatus
			if wpid, _ := wait4(pid, &ws, unix.WNOHANG|unix.WALL, nil); wpid == pid {
				continue
			}
			found = true
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		if !found {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// noChildren reports, with one waitid(P_ALL, WNOHANG|WNOWAIT|__WALL), that the
// spawner has no child process at all, alive or a zombie, on any of its threads
// (ECHILD). Then no kernel child left anything: whatever a kernel child's tree
// leaves running is in the spawner's subtree, since every process of it was forked
// below the kernel launcher and, when its parent exits, is reparented to its
// nearest living subreaper ancestor, at the latest the spawner (a child subreaper).
// So the topmost survivors of that tree are children of the spawner; none means none
// survive. It needs no /proc, no orphan list (CONFIG_PROC_CHILDREN) and no thread's
// credentials, so the reaper can ask it before handing the sweep to the kernel
// launcher. WNOWAIT leaves any status for its owner (the reaper, the orphan reaper).
// Any answer but ECHILD (children alive: userspace launches in flight, a leftover;
// an error) means "look": the full sweep decides.
func noChildren() bool {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT|unix.WALL, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return errors.Is(err, unix.ECHILD)
	}
}

// procPids lists the pids in /proc (through the directory fd opened before the
// restriction).
func (st *spawnerState) procPids() ([]int, error) {
	if _, err := unix.Seek(st.procDir, 0, 0); err != nil {
		return nil, fmt.Errorf("rewind /proc: %w", err)
	}
	buf := make([]byte, 16<<10)
	var pids []int
	for {
		n, err := unix.Getdents(st.procDir, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read /proc: %w", err)
		}
		if n == 0 {
			return pids, nil
		}
		for name := range sys.Dirents(buf[:n]) {
			if pid, err := strconv.Atoi(string(name)); err == nil && pid > 0 {
				pids = append(pids, pid)
			}
		}
	}
}

// serveKernel runs on the kernel launcher (launcher 0) when the main process gave
// the kernel-backend launches a socket of their own (hello.KernelSock): it reads
// them there and launches each on this thread, the one whose credentials the
// templates are bound to, with no handoff from another launcher thread. It then
// waits for the child itself (waitKernelChild): kernel children run one at a time,
// and the main process sends a kernel launch here only while none is in flight
// (it sends the others on the first socket, where they take the userspace path).
// A launch the kernel launcher cannot take is answered "redirect". It returns when
// the main process closes the socket.
func (st *spawnerState) serveKernel(buf, oob []byte) error {
	for {
		var m launchMsg
		fds, err := recvRaw(st.ksock, buf, oob, &m)
		if err != nil {
			if errors.Is(err, os.ErrClosed) || errors.Is(err, unix.ECONNRESET) {
				return nil
			}
			if errors.Is(err, unix.EBADF) || errors.Is(err, unix.ENOTSOCK) {
				return err
			}
			fmt.Fprintf(os.Stderr, "agentexec spawner: kernel launches: %v\n", err)
			continue
		}
		st.launchFromKernelSock(&m, fds)
	}
}

// launchFromKernelSock runs one launch read by serveKernel, on the kernel launcher.
func (st *spawnerState) launchFromKernelSock(m *launchMsg, fds []int) {
	defer closeAll(fds)
	req, ok := st.parseLaunch(m, fds)
	if !ok {
		return
	}
	defer req.close()
	// kernelBusy is free here unless the main process sent a second kernel launch
	// before the first one's exit (it does not): then, as for any launch the kernel
	// backend cannot take (launchKernel returns false), the first socket's
	// userspace path gets it.
	if m.Kernel && st.kernelBusy.CompareAndSwap(false, true) {
		var child *reaped
		handled := st.launchKernel(m, req, func(c reaped) {
			st.kmu.Lock()
			st.kchild = c.pid
			st.kmu.Unlock()
			child = &c
		})
		if child != nil {
			st.waitKernelChild(*child)
		}
		if handled {
			return // started and exited, or failed (replied)
		}
	}
	st.reply(&reply{ID: m.ID, Kind: replyRedirect}, nil)
}

// waitKernelChild waits on the kernel launcher for the kernel child it just
// started, reaps it, kills what it left (killKernelLeftovers, on this thread, whose
// domain the child shared) and only then reports the exit and frees kernelBusy: what
// a kernel child leaves is gone before its result returns and before the next
// kernel child starts.
func (st *spawnerState) waitKernelChild(c reaped) {
	pfd := []unix.PollFd{{Fd: int32(c.pidfd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(pfd, -1); !errors.Is(err, unix.EINTR) {
			break // readable: the child exited
		}
	}
	var ws unix.WaitStatus
	var ru unix.Rusage
	var err error
	for {
		// WNOHANG under kmu: never blocked while holding it (killKernelChild).
		st.kmu.Lock()
		var wpid int
		wpid, err = wait4(c.pid, &ws, unix.WALL|unix.WNOHANG, &ru)
		done := wpid != 0 || err != nil
		if done {
			st.kchild = 0
		}
		st.kmu.Unlock()
		if done {
			break
		}
		time.Sleep(time.Millisecond) // a readable pidfd without a zombie: not seen; be safe
	}
	unix.Close(c.pidfd)
	clean := true
	if !st.closing.Load() { // at shutdown the orphan reaper kills everything
		clean = st.killKernelLeftovers()
	}
	st.kernelDirty.Store(!clean)
	st.kernelBusy.Store(false)
	st.reply(exitReply(c.id, c.pid, true, ws, &ru, err), nil)
}

// killKernelChild kills the kernel child the kernel launcher waits for (shutdown)
// and reports whether none is left. The pid is still unreaped while kmu is held
// (waitKernelChild reaps under it), so the signal cannot reach a reused pid. (By
// pid: the spawner's seccomp filter refuses pidfd_send_signal.)
func (st *spawnerState) killKernelChild() bool {
	st.kmu.Lock()
	defer st.kmu.Unlock()
	if st.kchild > 0 {
		_ = unix.Kill(st.kchild, unix.SIGKILL)
	}
	return !st.kernelBusy.Load()
}
