package templates

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/sys"
)

// childModel applies encoded actions to a model of the child's fd table, following
// the RFC's semantics: actions in order, then close_range(3, ~0) unless INHERIT_FDS,
// then exec closes close-on-exec fds.
type childModel struct {
	fds   map[int]modelFD
	cwd   string
	opens int
}

type modelFD struct {
	obj     string
	cloexec bool
}

func (m *childModel) run(t *testing.T, c *sys.SpawnTemplateSpawnCall) {
	t.Helper()
	for i, a := range c.Actions() {
		switch a.Type {
		case sys.SPAWN_TEMPLATE_ACTION_DUP2:
			src, ok := m.fds[int(a.Fd)]
			if !ok {
				t.Fatalf("action %d: DUP2 from closed fd %d", i, a.Fd)
			}
			if a.Fd == a.Newfd {
				continue // only checks that fd is open; keeps its flags
			}
			m.fds[int(a.Newfd)] = modelFD{src.obj, a.Flags&unix.O_CLOEXEC != 0}
		case sys.SPAWN_TEMPLATE_ACTION_OPEN:
			m.fds[int(a.Newfd)] = modelFD{fmt.Sprintf("open#%d", m.opens), false}
			m.opens++
		case sys.SPAWN_TEMPLATE_ACTION_FCHDIR:
			d, ok := m.fds[int(a.Fd)]
			if !ok {
				t.Fatalf("action %d: FCHDIR to closed fd %d", i, a.Fd)
			}
			m.cwd = d.obj
		case sys.SPAWN_TEMPLATE_ACTION_CLOSE_RANGE:
			for fd := range m.fds {
				if fd >= int(a.Fd) && fd <= int(a.Newfd) {
					delete(m.fds, fd)
				}
			}
		case sys.SPAWN_TEMPLATE_ACTION_CLOSE:
			delete(m.fds, int(a.Fd))
		case sys.SPAWN_TEMPLATE_ACTION_SIGMASK, sys.SPAWN_TEMPLATE_ACTION_SIGDEFAULT:
		default:
			t.Fatalf("action %d: unknown type %d", i, a.Type)
		}
	}
	if c.Args.Flags&sys.SPAWN_TEMPLATE_SPAWN_INHERIT_FDS == 0 {
		for fd := range m.fds {
			if fd > 2 {
				delete(m.fds, fd)
			}
		}
	}
	for fd, f := range m.fds {
		if f.cloexec {
			delete(m.fds, fd)
		}
	}
}

// TestEncodeSpawnModel checks random specs, with fds chosen from a small range so
// that sources collide with targets and each other, against the fd table the child
// must end up with: exactly 0, 1, 2 and 3.. from the spec, each without close-on-exec,
// and the working directory from DirFD.
func TestEncodeSpawnModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func() int {
		if rng.IntN(5) == 0 {
			return NoFD
		}
		return rng.IntN(9)
	}
	for iter := range 5000 {
		s := NewSpawnSpec([]string{"tool"}, nil)
		s.Stdin, s.Stdout, s.Stderr, s.DirFD = pick(), pick(), pick(), pick()
		if rng.IntN(4) == 0 {
			s.StdinPath = "/dev/stdin-file"
		}
		for range rng.IntN(4) {
			if fd := pick(); fd >= 0 {
				s.ExtraFDs = append(s.ExtraFDs, fd)
			}
		}
		c, err := encodeSpawn(s)
		if err != nil {
			t.Fatalf("spec %+v: %v", s, err)
		}
		// The caller's table: every fd 0..40 open; the caller's own stdio without
		// close-on-exec, everything else with it (as Go opens files).
		m := &childModel{fds: map[int]modelFD{}}
		for fd := 0; fd <= 40; fd++ {
			m.fds[fd] = modelFD{fmt.Sprintf("caller:%d", fd), fd > 2}
		}
		m.run(t, c)

		want := map[int]string{}
		opens := 0
		stdio := []int{s.Stdin, s.Stdout, s.Stderr}
		if s.StdinPath != "" {
			stdio[0] = NoFD
		}
		for i, fd := range stdio {
			if fd == NoFD {
				want[i] = fmt.Sprintf("open#%d", opens)
				opens++
			} else {
				want[i] = fmt.Sprintf("caller:%d", fd)
			}
		}
		for i, fd := range s.ExtraFDs {
			want[3+i] = fmt.Sprintf("caller:%d", fd)
		}
		got := map[int]string{}
		for fd, f := range m.fds {
			got[fd] = f.obj
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("iteration %d, spec stdin=%d stdout=%d stderr=%d path=%q dir=%d extra=%v:\n got fds %v\nwant fds %v\nactions %v",
				iter, s.Stdin, s.Stdout, s.Stderr, s.StdinPath, s.DirFD, s.ExtraFDs, got, want, acts(c))
		}
		wantCwd := ""
		if s.DirFD >= 0 {
			wantCwd = fmt.Sprintf("caller:%d", s.DirFD)
		}
		if m.cwd != wantCwd {
			t.Fatalf("iteration %d: cwd %q, want %q", iter, m.cwd, wantCwd)
		}
	}
}
