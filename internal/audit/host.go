package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/sys"
)

// DefaultStateDir holds the host-state file (the same directory as the runtime's
// other host-wide state; tmpfs, emptied at boot like the kernel's audit state).
const DefaultStateDir = "/run/agentexec"

// stateFile and lockFile are the names under the state directory.
const (
	stateFile = "audit-state.json"
	lockFile  = "audit-state.lock"
)

// HostState is the host's audit switch as a Collector found and left it.
type HostState struct {
	// Enabled is the kernel's audit_enabled now (0 off, 1 on, 2 on and locked).
	Enabled uint32 `json:"enabled"`
	// EnabledBefore is what Open found.
	EnabledBefore uint32 `json:"enabled_before"`
	// Held says this collector holds audit on: it (or another live agentexec
	// runtime) turned it on, and the last holder to close restores EnabledBefore.
	Held bool `json:"held"`
	// AuditdPID is the registered audit daemon (0: none; without one the kernel
	// also prints every record to its log, rate-limited).
	AuditdPID uint32 `json:"auditd_pid"`
	// BacklogLimit and Lost are the kernel's queue limit and lost-record count.
	BacklogLimit uint32 `json:"backlog_limit"`
	Lost         uint32 `json:"lost"`
	// Recovered describes a state file left by a runtime that died holding audit
	// on, which Open restored before going on ("" when none).
	Recovered string `json:"recovered,omitempty"`
}

// savedState is the state file: what the first holder found (to restore), what it
// set, and who holds audit on now.
type savedState struct {
	Saved   switchState `json:"saved"`
	Set     switchState `json:"set"`
	Holders []holder    `json:"holders"`
}

type switchState struct {
	Enabled      uint32 `json:"enabled"`
	BacklogLimit uint32 `json:"backlog_limit"`
}

// holder is a process by pid and start time (so a reused pid is not taken for it).
type holder struct {
	PID   int    `json:"pid"`
	Start string `json:"start"`
}

func (h holder) alive() bool {
	s, err := procStart(h.PID)
	return err == nil && s == h.Start
}

// procStart returns field 22 (starttime) of /proc/PID/stat.
func procStart(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // comm may hold spaces and parentheses
	if i < 0 {
		return "", fmt.Errorf("/proc/%d/stat: no comm", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: %d fields after comm", pid, len(f))
	}
	return f[19], nil
}

// LiveHolders returns how many live processes hold the host's audit switch on
// through the state directory dir (DefaultStateDir when empty), read under its
// lock. While any does, the host's own setting is the one saved in the state
// file, and the last holder to close restores it.
func LiveHolders(dir string) (int, error) {
	if dir == "" {
		dir = DefaultStateDir
	}
	h := &hostSwitch{dir: dir}
	f, err := h.lock()
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s, err := h.read()
	if err != nil || s == nil {
		return 0, err
	}
	n := 0
	for _, x := range s.Holders {
		if x.alive() {
			n++
		}
	}
	return n, nil
}

// hostSwitch holds the host's audit switch for one collector.
type hostSwitch struct {
	dir  string
	self holder
	held bool
}

const ctlTimeout = 5 * time.Second

// lock takes the state directory's lock (flock, released at close).
func (h *hostSwitch) lock() (*os.File, error) {
	if err := os.MkdirAll(h.dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit state directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(h.dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit state lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit state lock %s: %w", f.Name(), os.NewSyscallError("flock", err))
	}
	return f, nil
}

func (h *hostSwitch) read() (*savedState, error) {
	p := filepath.Join(h.dir, stateFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("audit state: %w", err)
	}
	var s savedState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("audit state %s: %w (remove it after restoring the audit settings by hand)", p, err)
	}
	return &s, nil
}

func (h *hostSwitch) write(s *savedState) error {
	p := filepath.Join(h.dir, stateFile)
	if s == nil {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("audit state: %w", err)
		}
		return nil
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("audit state: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("audit state: %w", err)
	}
	return nil
}

// restore puts back what s saved, unless the switch was changed since by someone
// else (an audit daemon registered, or audit turned off): then it is left alone.
func restore(ctl *sys.AuditConn, s *savedState) (string, error) {
	st, err := ctl.GetStatus(ctlTimeout)
	if err != nil {
		return "", fmt.Errorf("AUDIT_GET: %w", err)
	}
	if st.PID != 0 {
		return fmt.Sprintf("left on: audit daemon %d registered since", st.PID), nil
	}
	if st.Enabled != s.Set.Enabled {
		return fmt.Sprintf("left alone: enabled is %d, not the %d agentexec set", st.Enabled, s.Set.Enabled), nil
	}
	want := sys.AuditStatus{Mask: sys.AuditStatusEnabled, Enabled: s.Saved.Enabled}
	if s.Saved.BacklogLimit != 0 && st.BacklogLimit == s.Set.BacklogLimit && s.Set.BacklogLimit != s.Saved.BacklogLimit {
		want.Mask |= sys.AuditStatusBacklog
		want.BacklogLimit = s.Saved.BacklogLimit
	}
	if err := ctl.SetStatus(want, ctlTimeout); err != nil {
		return "", fmt.Errorf("AUDIT_SET enabled=%d: %w", s.Saved.Enabled, err)
	}
	return fmt.Sprintf("restored enabled=%d backlog_limit=%d", s.Saved.Enabled, s.Saved.BacklogLimit), nil
}

// acquire reads the host's switch and, when it is off and enable is set, turns it
// on (raising the backlog limit to at least backlog), recording what to restore.
// A state file whose holders are all gone (a runtime that died holding audit on)
// is restored first.
func (h *hostSwitch) acquire(ctl *sys.AuditConn, enable bool, backlog uint32) (HostState, error) {
	var hs HostState
	lf, err := h.lock()
	if err != nil {
		return hs, err
	}
	defer lf.Close()
	s, err := h.read()
	if err != nil {
		return hs, err
	}
	if s != nil {
		live := s.Holders[:0]
		for _, x := range s.Holders {
			if x.alive() {
				live = append(live, x)
			}
		}
		s.Holders = live
		if len(live) == 0 {
			msg, err := restore(ctl, s)
			if err != nil {
				return hs, fmt.Errorf("restoring the audit state a dead runtime left in %s: %w", filepath.Join(h.dir, stateFile), err)
			}
			hs.Recovered = "a runtime died holding audit on: " + msg
			s = nil
			if err := h.write(nil); err != nil {
				return hs, err
			}
		}
	}
	st, err := ctl.GetStatus(ctlTimeout)
	if err != nil {
		return hs, err
	}
	hs.EnabledBefore, hs.AuditdPID = st.Enabled, st.PID
	switch {
	case s != nil: // other live runtimes hold it on: join them
		s.Holders = append(s.Holders, h.self)
		if err := h.write(s); err != nil {
			return hs, err
		}
		h.held = true
	case st.Enabled == 0 && enable:
		s = &savedState{Saved: switchState{Enabled: st.Enabled, BacklogLimit: st.BacklogLimit},
			Set: switchState{Enabled: 1, BacklogLimit: max(st.BacklogLimit, backlog)}, Holders: []holder{h.self}}
		// The file first: a crash right after the switch must leave what to restore.
		if err := h.write(s); err != nil {
			return hs, err
		}
		want := sys.AuditStatus{Mask: sys.AuditStatusEnabled, Enabled: 1}
		if s.Set.BacklogLimit != st.BacklogLimit {
			want.Mask |= sys.AuditStatusBacklog
			want.BacklogLimit = s.Set.BacklogLimit
		}
		if err := ctl.SetStatus(want, ctlTimeout); err != nil {
			_ = h.write(nil) // nothing was switched: the state file goes; the SET error is the one to report
			return hs, fmt.Errorf("AUDIT_SET enabled=1: %w", err)
		}
		h.held = true
	}
	st, err = ctl.GetStatus(ctlTimeout)
	if err != nil {
		return hs, err
	}
	hs.Enabled, hs.BacklogLimit, hs.Lost, hs.Held = st.Enabled, st.BacklogLimit, st.Lost, h.held
	return hs, nil
}

// release drops this holder; the last one restores the saved state.
func (h *hostSwitch) release(ctl *sys.AuditConn) (string, error) {
	if !h.held {
		return "", nil
	}
	h.held = false
	lf, err := h.lock()
	if err != nil {
		return "", err
	}
	defer lf.Close()
	s, err := h.read()
	if err != nil || s == nil {
		return "", err
	}
	live := s.Holders[:0]
	for _, x := range s.Holders {
		if x != h.self && x.alive() {
			live = append(live, x)
		}
	}
	s.Holders = live
	if len(live) > 0 {
		return "still held by " + strconv.Itoa(len(live)) + " runtime(s)", h.write(s)
	}
	msg, err := restore(ctl, s)
	if err != nil {
		return "", err
	}
	return msg, h.write(nil)
}
