package templates

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/sys"
)

// KernelSys is the syscall surface of the kernel backend. Probe.Syscalls returns the
// real one (sys.SpawnTemplateSyscalls); tests drive the error handling through fakes.
type KernelSys interface {
	// Create calls spawn_template_create and returns the template fd.
	Create(c *sys.SpawnTemplateCreateCall) (fd int, err error)
	// Spawn calls spawn_template_spawn and returns the child's pid and pidfd.
	Spawn(fd int, c *sys.SpawnTemplateSpawnCall) (pid, pidfd int, err error)
	// FDLink returns fd's /proc/self/fd link name.
	FDLink(fd int) (string, error)
	// Close closes a template fd.
	Close(fd int) error
	// Gettid returns the calling thread's id.
	Gettid() int
}

// ErrNotELF is matched by NewKernel's error when the kernel refused the executable's
// format (ENOEXEC): scripts and binfmt_misc targets use the userspace backend.
var ErrNotELF = errors.New("not an ELF executable")

// ErrNotSpawnTemplate is matched when the create syscall returned an fd that is not a
// spawn template: the syscall number belongs to something else on this kernel.
var ErrNotSpawnTemplate = errors.New("fd is not a spawn template")

// ErrWrongThread is matched when a kernel template is used from a thread other than
// the one that created it (the kernel would refuse another thread's credentials).
var ErrWrongThread = errors.New("kernel template used from another thread")

// ErrDirFDPath is matched by Spawn's error when SpawnSpec.DirFD is an O_PATH fd. The
// RFC's FCHDIR looks its fd up with fdget, which skips O_PATH files (fchdir(2)
// itself accepts them): the child would die before exec with the raw status 1,
// which reads as "killed by SIGHUP". Open the directory O_RDONLY|O_DIRECTORY.
var ErrDirFDPath = errors.New("an O_PATH fd: the RFC's FCHDIR refuses it (open the directory O_RDONLY|O_DIRECTORY)")

// KernelCreateError is NewKernel's error. Every create failure means: use the
// userspace backend for this tool (and report it in `agentexec check`).
type KernelCreateError struct {
	Path string
	Err  error
}

func (e *KernelCreateError) Error() string {
	return fmt.Sprintf("spawn_template_create %s: %v", e.Path, e.Err)
}

func (e *KernelCreateError) Unwrap() error { return e.Err }

// Is matches ErrNotELF for ENOEXEC.
func (e *KernelCreateError) Is(target error) bool {
	return target == ErrNotELF && errors.Is(e.Err, unix.ENOEXEC)
}

// KernelSpawnError is KernelTemplate.Spawn's error when no child was created.
type KernelSpawnError struct {
	Path string
	// Field names the argument the kernel (or the encoder) rejected, when known.
	Field string
	Err   error
}

func (e *KernelSpawnError) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("spawn_template_spawn %s: field %s: %v", e.Path, e.Field, e.Err)
	}
	return fmt.Sprintf("spawn_template_spawn %s: %v", e.Path, e.Err)
}

func (e *KernelSpawnError) Unwrap() error { return e.Err }

// KernelTemplate is a spawn_template fd for one executable, bound to the OS thread
// (and credentials) that created it. It is not safe for concurrent use: it belongs
// to one locked thread.
type KernelTemplate struct {
	ks     KernelSys
	path   string
	fd     int
	tid    int
	closed bool
	n      counters
}

// NewKernel creates a kernel template for the absolute path. Call it on the locked
// OS thread that will spawn from the template, after that thread's restriction. The
// returned fd is confirmed by its anon_inode:spawn_template link name. Any error
// (a *KernelCreateError; ErrNotELF for scripts) means the tool uses the userspace
// backend.
func NewKernel(ks KernelSys, path string) (*KernelTemplate, error) {
	k := &KernelTemplate{ks: ks, path: path, fd: -1}
	if err := k.create(); err != nil {
		return nil, err
	}
	return k, nil
}

// NewKernelFor creates a kernel template for the binary of a userspace template,
// refusing non-ELF files (ErrNotELF) without a syscall. The same thread rules as for
// NewKernel apply.
func NewKernelFor(ks KernelSys, t *Template) (*KernelTemplate, error) {
	snap := t.Snapshot()
	if !snap.ELF {
		return nil, &KernelCreateError{Path: snap.Path, Err: fmt.Errorf("%w (checked before spawn_template_create): %w", ErrNotELF, unix.ENOEXEC)}
	}
	return NewKernel(ks, snap.Path)
}

func (k *KernelTemplate) create() error {
	c, err := sys.NewSpawnTemplateCreateCall(k.path, sys.SPAWN_TEMPLATE_CREATE_CLOEXEC)
	if err != nil {
		return &KernelCreateError{Path: k.path, Err: err}
	}
	fd, err := k.ks.Create(c)
	if err != nil {
		return &KernelCreateError{Path: k.path, Err: err}
	}
	link, err := k.ks.FDLink(fd)
	if err == nil && link != sys.SpawnTemplateFDLinkName {
		err = fmt.Errorf("%w: fd %d links to %q, want %q", ErrNotSpawnTemplate, fd, link, sys.SpawnTemplateFDLinkName)
	}
	if err != nil {
		return &KernelCreateError{Path: k.path, Err: errors.Join(err, k.ks.Close(fd))}
	}
	k.fd = fd
	k.tid = k.ks.Gettid()
	k.n.creations.Add(1)
	return nil
}

// Path returns the executable's path.
func (k *KernelTemplate) Path() string { return k.path }

// FD returns the template fd (-1 once closed).
func (k *KernelTemplate) FD() int { return k.fd }

// Stats returns the template's counters (Hits counts spawns that needed no recreation).
func (k *KernelTemplate) Stats() Stats { return k.n.stats() }

// Close closes the template fd. Closing twice is a no-op.
func (k *KernelTemplate) Close() error {
	if k.closed {
		return nil
	}
	k.closed = true
	fd := k.fd
	k.fd = -1
	if fd < 0 {
		return nil
	}
	if err := k.ks.Close(fd); err != nil {
		return fmt.Errorf("close spawn template fd %d (%s): %w", fd, k.path, err)
	}
	return nil
}

// NoFD marks an absent fd in a SpawnSpec.
const NoFD = -1

// SpawnSpec is one launch from a kernel template. Fds are numbers in the calling
// process; the child gets them at 0, 1, 2 and 3, 4, … and nothing else.
type SpawnSpec struct {
	// Argv is the argument vector (argv[0] included); it must not be empty.
	Argv []string
	// Envp is the complete environment.
	Envp []string
	// Stdin, Stdout and Stderr are the fds to install at 0, 1, 2; NoFD opens
	// /dev/null instead (read-only for stdin, write-only for the others).
	Stdin, Stdout, Stderr int
	// StdinPath, when set, is opened read-only as fd 0 in the child (OPEN action;
	// a relative path resolves against DirFD) and Stdin is ignored.
	StdinPath string
	// DirFD is a directory fd to FCHDIR into (first of all actions); NoFD keeps the
	// caller's working directory. It must be a real open (O_RDONLY|O_DIRECTORY), not
	// O_PATH: Spawn refuses that (ErrDirFDPath), as the RFC's FCHDIR would.
	DirFD int
	// ExtraFDs are installed at 3, 4, … (INHERIT_FDS plus a CLOSE_RANGE above them).
	// Without them every fd above 2 is closed (the kernel default).
	ExtraFDs []int
	// ResetSignals unblocks every signal and resets every disposition to SIG_DFL.
	ResetSignals bool
}

// NewSpawnSpec returns a spec with every fd set to NoFD (stdio from /dev/null, the
// caller's working directory); set the fields the launch needs. The zero SpawnSpec
// means fds 0, 0, 0 and FCHDIR(0), which is rarely what is wanted.
func NewSpawnSpec(argv, envp []string) SpawnSpec {
	return SpawnSpec{Argv: argv, Envp: envp, Stdin: NoFD, Stdout: NoFD, Stderr: NoFD, DirFD: NoFD}
}

const devNull = "/dev/null"

// allSignals is every signal 1..64 except SIGKILL and SIGSTOP (bit sig-1).
const allSignals = ^uint64(0) &^ (1<<(unix.SIGKILL-1) | 1<<(unix.SIGSTOP-1))

// encodeSpawn turns a spec into a sealed spawn call. Every source fd is first moved
// above the highest target (DUP2 with O_CLOEXEC), then installed at its target with a
// plain DUP2, so no source is clobbered by an earlier target and no target keeps the
// caller's close-on-exec flag (a DUP2 onto itself would not clear it).
func encodeSpawn(s SpawnSpec) (*sys.SpawnTemplateSpawnCall, error) {
	if len(s.Argv) == 0 {
		return nil, &sys.SpawnTemplateArgError{Field: "argv", Reason: "empty (argv[0] is required)", Errno: unix.EINVAL}
	}
	c, err := sys.NewSpawnTemplateSpawnCall(s.Argv, s.Envp)
	if err != nil {
		return nil, err
	}
	if s.DirFD >= 0 {
		c.Fchdir(s.DirFD)
	} else if s.DirFD != NoFD {
		return nil, &sys.SpawnTemplateArgError{Field: "SpawnSpec.DirFD", Reason: fmt.Sprintf("invalid fd %d", s.DirFD), Errno: unix.EINVAL}
	}

	type target struct {
		src  int    // fd in the caller, or NoFD
		open string // path to OPEN when src is NoFD
		how  uint64 // open flags
	}
	n := 3 + len(s.ExtraFDs)
	targets := make([]target, n)
	targets[0] = target{src: s.Stdin, open: devNull, how: unix.O_RDONLY}
	if s.StdinPath != "" {
		targets[0] = target{src: NoFD, open: s.StdinPath, how: unix.O_RDONLY}
	}
	targets[1] = target{src: s.Stdout, open: devNull, how: unix.O_WRONLY}
	targets[2] = target{src: s.Stderr, open: devNull, how: unix.O_WRONLY}
	for i, fd := range s.ExtraFDs {
		if fd < 0 {
			return nil, &sys.SpawnTemplateArgError{Field: fmt.Sprintf("SpawnSpec.ExtraFDs[%d]", i), Reason: fmt.Sprintf("invalid fd %d", fd), Errno: unix.EBADF}
		}
		targets[3+i] = target{src: fd}
	}
	names := [3]string{"Stdin", "Stdout", "Stderr"}
	next := n
	for i, t := range targets[:3] {
		if t.src < NoFD {
			return nil, &sys.SpawnTemplateArgError{Field: "SpawnSpec." + names[i], Reason: fmt.Sprintf("invalid fd %d", t.src), Errno: unix.EBADF}
		}
	}
	for _, t := range targets {
		if t.src >= next {
			next = t.src + 1
		}
	}
	// Pass 1: move sources that lie in the target range out of the way.
	moved := map[int]int{}
	for i := range targets {
		src := targets[i].src
		if src < 0 || src >= n {
			continue
		}
		m, ok := moved[src]
		if !ok {
			m = next
			next++
			moved[src] = m
			c.Dup2(src, m, unix.O_CLOEXEC)
		}
		targets[i].src = m
	}
	// Pass 2: install every target.
	for i, t := range targets {
		if t.src >= 0 {
			c.Dup2(t.src, i, 0)
			continue
		}
		if err := c.Open(unix.AT_FDCWD, i, t.open, sys.OpenHow{Flags: t.how}); err != nil {
			return nil, err
		}
	}
	var flags uint64
	if len(s.ExtraFDs) > 0 {
		flags = sys.SPAWN_TEMPLATE_SPAWN_INHERIT_FDS
		c.CloseRange(n, sys.SpawnTemplateCloseRangeMax, 0)
	}
	if s.ResetSignals {
		c.Sigmask(0)
		c.Sigdefault(allSignals)
	}
	if _, err := c.Seal(flags); err != nil {
		if len(s.ExtraFDs) > 0 {
			return nil, fmt.Errorf("SpawnSpec.ExtraFDs has %d fds: %w", len(s.ExtraFDs), err)
		}
		return nil, err
	}
	return c, nil
}

// fieldOf names the argument behind an errno of spawn_template_spawn, for errors.
func fieldOf(err error) string {
	switch {
	case errors.Is(err, unix.E2BIG):
		return "actions_len"
	case errors.Is(err, unix.EINVAL):
		return "flags, pidfd, reserved or an action's unused fields"
	case errors.Is(err, unix.EFAULT):
		return "argv, envp, actions or an action's arg"
	}
	return ""
}

// Spawn starts a child from the template. It returns the child's pid and pidfd;
// after success, action and exec failures show only in the child's exit status
// (DecodeKernelWaitStatus for a wait4 status, DecodeKernelChildStatus for waitid's).
// The child runs in the caller's cgroup until moved (by writing its pid into the
// target cgroup's cgroup.procs).
//
// Error handling: ESTALE (the binary changed) and EACCES (the template belongs to
// other credentials) close the template, recreate it on this thread and retry once;
// recreated reports that. E2BIG and EINVAL give a *KernelSpawnError naming the field.
// Spawn must be called on the thread that created (or last recreated) the template.
func (k *KernelTemplate) Spawn(s SpawnSpec) (pid, pidfd int, recreated bool, err error) {
	if k.closed {
		return -1, -1, false, &KernelSpawnError{Path: k.path, Err: unix.EBADF}
	}
	if tid := k.ks.Gettid(); tid != k.tid {
		return -1, -1, false, &KernelSpawnError{Path: k.path, Err: fmt.Errorf("%w: created on thread %d, called on %d", ErrWrongThread, k.tid, tid)}
	}
	if s.DirFD >= 0 {
		// One fcntl: the kernel would report an O_PATH fd only as a dead child.
		fl, err := unix.FcntlInt(uintptr(s.DirFD), unix.F_GETFL, 0)
		switch {
		case err != nil:
			return -1, -1, false, &KernelSpawnError{Path: k.path, Field: "SpawnSpec.DirFD", Err: err}
		case fl&unix.O_PATH != 0:
			return -1, -1, false, &KernelSpawnError{Path: k.path, Field: "SpawnSpec.DirFD", Err: fmt.Errorf("fd %d is %w", s.DirFD, ErrDirFDPath)}
		}
	}
	c, err := encodeSpawn(s)
	if err != nil {
		var ae *sys.SpawnTemplateArgError
		field := ""
		if errors.As(err, &ae) {
			field = ae.Field
		}
		return -1, -1, false, &KernelSpawnError{Path: k.path, Field: field, Err: err}
	}
	for attempt := 0; ; attempt++ {
		pid, pidfd, err = k.ks.Spawn(k.fd, c)
		if err == nil {
			if !recreated {
				k.n.hits.Add(1)
			}
			return pid, pidfd, recreated, nil
		}
		stale := errors.Is(err, unix.ESTALE)
		creds := errors.Is(err, unix.EACCES)
		if (!stale && !creds) || attempt > 0 {
			serr := &KernelSpawnError{Path: k.path, Field: fieldOf(err), Err: err}
			if attempt > 0 {
				serr.Err = fmt.Errorf("after recreating the template: %w", err)
			}
			return -1, -1, recreated, serr
		}
		why := "stale (ESTALE: the executable changed)"
		if creds {
			why = "owned by other credentials (EACCES)"
		}
		old := k.fd
		k.fd = -1
		cerr := k.ks.Close(old)
		if err := k.create(); err != nil {
			// The template is unusable now; the caller falls back to userspace.
			k.closed = true
			return -1, -1, false, &KernelSpawnError{Path: k.path, Err: fmt.Errorf("template %s; recreating: %w", why, errors.Join(err, cerr))}
		}
		if cerr != nil {
			return -1, -1, false, &KernelSpawnError{Path: k.path, Err: fmt.Errorf("closing the %s template fd %d: %w", why, old, cerr)}
		}
		k.n.recreations.Add(1)
		recreated = true
	}
}
