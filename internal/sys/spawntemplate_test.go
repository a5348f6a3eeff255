package sys

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// layoutRow is one size or offset: the Go value and the value from the facts sheet
// (SPAWN_TEMPLATE_ABI.md, the RFC's UAPI header).
type layoutRow struct {
	name     string
	got, doc uintptr
}

func spawnTemplateLayout() []layoutRow {
	var a SpawnTemplateAction
	var h OpenHow
	var o SpawnTemplateOpen
	var s SpawnTemplateSigset
	var c SpawnTemplateCreateArgs
	var p SpawnTemplateSpawnArgs
	return []layoutRow{
		{"sizeof(spawn_template_action)", unsafe.Sizeof(a), 24},
		{"action.type", unsafe.Offsetof(a.Type), 0},
		{"action.flags", unsafe.Offsetof(a.Flags), 4},
		{"action.fd", unsafe.Offsetof(a.Fd), 8},
		{"action.newfd", unsafe.Offsetof(a.Newfd), 12},
		{"action.arg", unsafe.Offsetof(a.Arg), 16},

		{"sizeof(open_how)", unsafe.Sizeof(h), 24},
		{"open_how.flags", unsafe.Offsetof(h.Flags), 0},
		{"open_how.mode", unsafe.Offsetof(h.Mode), 8},
		{"open_how.resolve", unsafe.Offsetof(h.Resolve), 16},

		{"sizeof(spawn_template_open)", unsafe.Sizeof(o), 32},
		{"open.path", unsafe.Offsetof(o.Path), 0},
		{"open.how", unsafe.Offsetof(o.How), 8},

		{"sizeof(spawn_template_sigset)", unsafe.Sizeof(s), 16},
		{"sigset.sigset", unsafe.Offsetof(s.Sigset), 0},
		{"sigset.sigsetsize", unsafe.Offsetof(s.Sigsetsize), 8},

		{"sizeof(spawn_template_create_args)", unsafe.Sizeof(c), SPAWN_TEMPLATE_CREATE_ARGS_SIZE_VER0},
		{"create.flags", unsafe.Offsetof(c.Flags), 0},
		{"create.execfd", unsafe.Offsetof(c.Execfd), 8},
		{"create.exec_flags", unsafe.Offsetof(c.ExecFlags), 12},
		{"create.filename", unsafe.Offsetof(c.Filename), 16},
		{"create.actions", unsafe.Offsetof(c.Actions), 24},
		{"create.actions_len", unsafe.Offsetof(c.ActionsLen), 32},
		{"create.reserved", unsafe.Offsetof(c.Reserved), 40},

		{"sizeof(spawn_template_spawn_args)", unsafe.Sizeof(p), SPAWN_TEMPLATE_SPAWN_ARGS_SIZE_VER0},
		{"spawn.flags", unsafe.Offsetof(p.Flags), 0},
		{"spawn.pidfd", unsafe.Offsetof(p.Pidfd), 8},
		{"spawn.argv", unsafe.Offsetof(p.Argv), 16},
		{"spawn.envp", unsafe.Offsetof(p.Envp), 24},
		{"spawn.actions", unsafe.Offsetof(p.Actions), 32},
		{"spawn.actions_len", unsafe.Offsetof(p.ActionsLen), 40},
		{"spawn.reserved", unsafe.Offsetof(p.Reserved), 48},
	}
}

func TestSpawnTemplateLayout(t *testing.T) {
	for _, r := range spawnTemplateLayout() {
		if r.got != r.doc {
			t.Errorf("%s = %d, the UAPI layout says %d", r.name, r.got, r.doc)
		}
	}
	// Field sizes: a wider Go field would shift the kernel's view even at the right offset.
	var a SpawnTemplateAction
	var c SpawnTemplateCreateArgs
	for _, r := range []layoutRow{
		{"action.fd size", unsafe.Sizeof(a.Fd), 4},
		{"action.newfd size", unsafe.Sizeof(a.Newfd), 4},
		{"create.execfd size", unsafe.Sizeof(c.Execfd), 4},
		{"create.reserved size", unsafe.Sizeof(c.Reserved), 32},
	} {
		if r.got != r.doc {
			t.Errorf("%s = %d, want %d", r.name, r.got, r.doc)
		}
	}
}

func TestSpawnTemplateConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"SPAWN_TEMPLATE_CREATE_CLOEXEC", SPAWN_TEMPLATE_CREATE_CLOEXEC, 1},
		{"SPAWN_TEMPLATE_SPAWN_INHERIT_FDS", SPAWN_TEMPLATE_SPAWN_INHERIT_FDS, 1},
		{"ACTION_CLOSE", SPAWN_TEMPLATE_ACTION_CLOSE, 0},
		{"ACTION_DUP2", SPAWN_TEMPLATE_ACTION_DUP2, 1},
		{"ACTION_FCHDIR", SPAWN_TEMPLATE_ACTION_FCHDIR, 2},
		{"ACTION_OPEN", SPAWN_TEMPLATE_ACTION_OPEN, 3},
		{"ACTION_CLOSE_RANGE", SPAWN_TEMPLATE_ACTION_CLOSE_RANGE, 4},
		{"ACTION_SIGMASK", SPAWN_TEMPLATE_ACTION_SIGMASK, 5},
		{"ACTION_SIGDEFAULT", SPAWN_TEMPLATE_ACTION_SIGDEFAULT, 6},
		{"CREATE_ARGS_SIZE_VER0", SPAWN_TEMPLATE_CREATE_ARGS_SIZE_VER0, 72},
		{"SPAWN_ARGS_SIZE_VER0", SPAWN_TEMPLATE_SPAWN_ARGS_SIZE_VER0, 80},
		{"MAX_ACTIONS", SPAWN_TEMPLATE_MAX_ACTIONS, 256},
		{"create nr", SPAWN_TEMPLATE_CREATE_NR_DEFAULT, 472},
		{"spawn nr", SPAWN_TEMPLATE_SPAWN_NR_DEFAULT, 473},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
}

// le builds expected little-endian bytes by hand.
type le struct{ b []byte }

func (w *le) u32(v uint32) *le { w.b = binary.LittleEndian.AppendUint32(w.b, v); return w }
func (w *le) s32(v int32) *le  { return w.u32(uint32(v)) }
func (w *le) u64(v uint64) *le { w.b = binary.LittleEndian.AppendUint64(w.b, v); return w }

func rawBytes[T any](p *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(p)), unsafe.Sizeof(*p))
}

// cstring reads the NUL-terminated string at user address a, which must lie inside
// buf (memory the encoder owns); it fails the test otherwise.
func cstring(t *testing.T, buf []byte, a uint64) string {
	t.Helper()
	base := addr(&buf[0])
	if a < base || a >= base+uint64(len(buf)) {
		t.Fatalf("address %#x is outside the owned buffer [%#x, +%d)", a, base, len(buf))
	}
	rest := buf[a-base:]
	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		t.Fatalf("string at %#x is not NUL-terminated", a)
	}
	return string(rest[:i])
}

// strArray decodes a NULL-terminated pointer array (ptrs) whose strings live in buf.
func strArray(t *testing.T, buf []byte, ptrs []uint64) []string {
	t.Helper()
	var out []string
	for i, p := range ptrs {
		if p == 0 {
			if i != len(ptrs)-1 {
				t.Fatalf("NULL at %d of %d", i, len(ptrs))
			}
			return out
		}
		out = append(out, cstring(t, buf, p))
	}
	t.Fatal("pointer array is not NULL-terminated")
	return nil
}

func TestSpawnTemplateCreateGolden(t *testing.T) {
	c, err := NewSpawnTemplateCreateCall("/usr/bin/true", SPAWN_TEMPLATE_CREATE_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	want := (&le{}).
		u64(1).                       // flags = CLOEXEC
		s32(-1).                      // execfd
		u32(0).                       // exec_flags
		u64(addr(&c.filename[0])).    // filename
		u64(0).u64(0).                // actions, actions_len
		u64(0).u64(0).u64(0).u64(0).b // reserved
	if got := rawBytes(&c.Args); !bytes.Equal(got, want) {
		t.Fatalf("create args bytes\n got %x\nwant %x", got, want)
	}
	if got := cstring(t, c.filename, c.Args.Filename); got != "/usr/bin/true" {
		t.Fatalf("filename = %q", got)
	}
	_, err = NewSpawnTemplateCreateCall("bin/true", 0)
	var ae *SpawnTemplateArgError
	if !errors.As(err, &ae) || ae.Field != "filename" || !errors.Is(err, unix.EINVAL) {
		t.Fatalf("relative filename: err = %v, want an EINVAL error naming filename", err)
	}
}

func TestSpawnTemplateSpawnGolden(t *testing.T) {
	c, err := NewSpawnTemplateSpawnCall([]string{"rg", "-n", ""}, []string{"PATH=/usr/bin", "LANG=C"})
	if err != nil {
		t.Fatal(err)
	}
	c.Fchdir(7)
	c.Dup2(9, 10, unix.O_CLOEXEC)
	c.Dup2(10, 1, 0)
	if err := c.Open(unix.AT_FDCWD, 0, "/dev/null", OpenHow{Flags: unix.O_RDONLY}); err != nil {
		t.Fatal(err)
	}
	c.CloseRange(4, SpawnTemplateCloseRangeMax, 0)
	c.Sigmask(0)
	c.Sigdefault(1<<(unix.SIGPIPE-1) | 1<<(unix.SIGINT-1))
	c.Close(5)
	args, err := c.Seal(SPAWN_TEMPLATE_SPAWN_INHERIT_FDS)
	if err != nil {
		t.Fatal(err)
	}
	if args != &c.Args {
		t.Fatal("Seal must return the call's own argument block")
	}

	want := (&le{}).
		u64(1).                   // flags = INHERIT_FDS
		u64(addr(&c.PidFD)).      // pidfd
		u64(addr(&c.argv[0])).    // argv
		u64(addr(&c.envp[0])).    // envp
		u64(addr(&c.actions[0])). // actions
		u64(8).                   // actions_len
		u64(0).u64(0).u64(0).u64(0).b
	if got := rawBytes(&c.Args); !bytes.Equal(got, want) {
		t.Fatalf("spawn args bytes\n got %x\nwant %x", got, want)
	}

	openArg := addr(&c.opens[0].arg)
	maskArg := addr(&c.sigsets[0].arg)
	defArg := addr(&c.sigsets[1].arg)
	wantActions := (&le{}).
		u32(2).u32(0).s32(7).s32(0).u64(0).                   // FCHDIR 7
		u32(1).u32(unix.O_CLOEXEC).s32(9).s32(10).u64(0).     // DUP2 9→10 cloexec
		u32(1).u32(0).s32(10).s32(1).u64(0).                  // DUP2 10→1
		u32(3).u32(0).s32(unix.AT_FDCWD).s32(0).u64(openArg). // OPEN at fd 0
		u32(4).u32(0).s32(4).s32(0x7fffffff).u64(0).          // CLOSE_RANGE 4..max
		u32(5).u32(0).s32(0).s32(0).u64(maskArg).             // SIGMASK
		u32(6).u32(0).s32(0).s32(0).u64(defArg).              // SIGDEFAULT
		u32(0).u32(0).s32(5).s32(0).u64(0).b                  // CLOSE 5
	gotActions := unsafe.Slice((*byte)(unsafe.Pointer(&c.actions[0])), len(c.actions)*24)
	if !bytes.Equal(gotActions, wantActions) {
		t.Fatalf("action bytes\n got %x\nwant %x", gotActions, wantActions)
	}

	wantOpen := (&le{}).u64(addr(&c.opens[0].path[0])).u64(unix.O_RDONLY).u64(0).u64(0).b
	if got := rawBytes(&c.opens[0].arg); !bytes.Equal(got, wantOpen) {
		t.Fatalf("open arg bytes\n got %x\nwant %x", got, wantOpen)
	}
	if got := cstring(t, c.opens[0].path, c.opens[0].arg.Path); got != "/dev/null" {
		t.Fatalf("open path = %q", got)
	}
	wantMask := (&le{}).u64(addr(&c.sigsets[0].set)).u64(8).b
	if got := rawBytes(&c.sigsets[0].arg); !bytes.Equal(got, wantMask) {
		t.Fatalf("sigmask arg bytes\n got %x\nwant %x", got, wantMask)
	}
	if c.sigsets[1].arg.Sigset != addr(&c.sigsets[1].set) {
		t.Fatal("sigdefault arg does not point at its own set")
	}
	if got := c.sigsets[1].set; got != 1<<12|1<<1 {
		t.Fatalf("sigdefault set = %#x, want SIGPIPE|SIGINT bits %#x", got, 1<<12|1<<1)
	}
	if got := strArray(t, c.strs, c.argv); strings.Join(got, "|") != "rg|-n|" || len(got) != 3 {
		t.Fatalf("argv = %q", got)
	}
	if got := strArray(t, c.strs, c.envp); strings.Join(got, "|") != "PATH=/usr/bin|LANG=C" {
		t.Fatalf("envp = %q", got)
	}
	if c.PidFD != -1 {
		t.Fatalf("pidfd slot = %d before the call, want -1", c.PidFD)
	}
}

func TestSpawnTemplateSpawnEmptyVectors(t *testing.T) {
	c, err := NewSpawnTemplateSpawnCall(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Seal(0); err != nil {
		t.Fatal(err)
	}
	if c.Args.Actions != 0 || c.Args.ActionsLen != 0 {
		t.Fatalf("no actions must encode actions=0, actions_len=0; got %#x, %d", c.Args.Actions, c.Args.ActionsLen)
	}
	if len(strArray(t, c.strs, c.argv)) != 0 || len(strArray(t, c.strs, c.envp)) != 0 {
		t.Fatal("empty argv/envp must encode a lone NULL")
	}
}

func TestSpawnTemplateEncodeErrors(t *testing.T) {
	_, err := NewSpawnTemplateSpawnCall([]string{"a", "b\x00c"}, nil)
	var ae *SpawnTemplateArgError
	if !errors.As(err, &ae) || ae.Field != "argv[1]" {
		t.Fatalf("NUL in argv: err = %v, want one naming argv[1]", err)
	}
	_, err = NewSpawnTemplateSpawnCall(nil, []string{"X=\x00"})
	if !errors.As(err, &ae) || ae.Field != "envp[0]" {
		t.Fatalf("NUL in envp: err = %v, want one naming envp[0]", err)
	}
	c, _ := NewSpawnTemplateSpawnCall([]string{"x"}, nil)
	for i := 0; i < SPAWN_TEMPLATE_MAX_ACTIONS+1; i++ {
		c.Close(3 + i)
	}
	_, err = c.Seal(0)
	if !errors.As(err, &ae) || ae.Field != "actions_len" || !errors.Is(err, unix.E2BIG) || !errors.Is(err, ErrSpawnTemplateArg) {
		t.Fatalf("257 actions: err = %v, want E2BIG naming actions_len", err)
	}
	if !strings.Contains(err.Error(), "actions_len") {
		t.Fatalf("message %q does not name actions_len", err)
	}
	c, _ = NewSpawnTemplateSpawnCall([]string{"x"}, nil)
	if _, err := c.Seal(2); !errors.As(err, &ae) || ae.Field != "flags" {
		t.Fatalf("unknown flags: err = %v", err)
	}
}

func TestStatxZ(t *testing.T) {
	var st unix.Statx_t
	if err := StatxZ(unix.AT_FDCWD, []byte("/proc/self/exe\x00"), 0, unix.STATX_INO, &st); err != nil {
		t.Fatal(err)
	}
	var ref unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, "/proc/self/exe", 0, unix.STATX_INO, &ref); err != nil {
		t.Fatal(err)
	}
	if st.Ino != ref.Ino || st.Ino == 0 {
		t.Fatalf("StatxZ ino = %d, unix.Statx ino = %d", st.Ino, ref.Ino)
	}
	if err := StatxZ(unix.AT_FDCWD, []byte("/nonexistent-agentexec\x00"), 0, unix.STATX_INO, &st); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("missing path: err = %v, want ENOENT", err)
	}
	if err := StatxZ(unix.AT_FDCWD, []byte("/proc"), 0, unix.STATX_INO, &st); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("unterminated path: err = %v, want EINVAL", err)
	}
	p := []byte("/proc/self/exe\x00")
	if n := testing.AllocsPerRun(100, func() { _ = StatxZ(unix.AT_FDCWD, p, 0, unix.STATX_INO, &st) }); n != 0 {
		t.Fatalf("StatxZ allocates %v times per call, want 0", n)
	}
}

func TestFDLinkName(t *testing.T) {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if got, err := FDLinkName(fd); err != nil || got != "/dev/null" {
		t.Fatalf("FDLinkName = %q, %v", got, err)
	}
	if _, err := FDLinkName(1 << 20); !errors.Is(err, unix.ENOENT) {
		t.Fatalf("closed fd: err = %v, want ENOENT", err)
	}
}

// TestSpawnTemplateSyscallsAbsent checks the raw wrappers against this kernel only
// where the probe rules allow it: a number the kernel does not implement at all.
func TestSpawnTemplateSyscallsUnknownNumber(t *testing.T) {
	// 1023 is far above every syscall table today; calling it is safe and must give
	// ENOSYS, which shows the wrapper passes the errno through untouched.
	s := SpawnTemplateSyscalls{CreateNr: 1023, SpawnNr: 1023}
	c, _ := NewSpawnTemplateCreateCall("/bin/true", 0)
	if fd, err := s.Create(c); fd != -1 || !errors.Is(err, unix.ENOSYS) {
		t.Fatalf("Create on nr 1023 = %d, %v; want -1, ENOSYS", fd, err)
	}
	sc, _ := NewSpawnTemplateSpawnCall([]string{"true"}, nil)
	if _, err := sc.Seal(0); err != nil {
		t.Fatal(err)
	}
	if pid, pidfd, err := s.Spawn(-1, sc); pid != -1 || pidfd != -1 || !errors.Is(err, unix.ENOSYS) {
		t.Fatalf("Spawn on nr 1023 = %d, %d, %v; want ENOSYS", pid, pidfd, err)
	}
	unsealed, _ := NewSpawnTemplateSpawnCall(nil, nil)
	if _, _, err := s.Spawn(-1, unsealed); err == nil {
		t.Fatal("Spawn with an unsealed call must fail")
	}
}
