package spawner

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"

	"github.com/agentexec/agentexec/internal/sys"
	"github.com/agentexec/agentexec/policy"
)

// Landlock access rights agentexec grants, by kind of root.
const (
	fsRead  = ll.AccessFSReadFile | ll.AccessFSReadDir
	fsExec  = fsRead | ll.AccessFSExecute
	fsWrite = fsRead | ll.AccessFSWriteFile | ll.AccessFSRemoveDir | ll.AccessFSRemoveFile |
		ll.AccessFSMakeDir | ll.AccessFSMakeReg | ll.AccessFSMakeSock | ll.AccessFSMakeFifo |
		ll.AccessFSMakeSym | ll.AccessFSRefer | ll.AccessFSTruncate
	// fsFileOnly are the rights that apply to a non-directory; the kernel refuses
	// directory rights on a file rule.
	fsFileOnly = ll.AccessFSExecute | ll.AccessFSWriteFile | ll.AccessFSReadFile | ll.AccessFSTruncate
)

// handledFS returns the filesystem rights the kernel of ABI abi can handle, of those
// agentexec uses. ioctl_dev (ABI 5) is left unhandled: device ioctls are allowed on
// whatever device files the filesystem rules let a tool open.
func handledFS(abi int) uint64 {
	var h uint64
	if abi >= policy.LandlockABIFS {
		h = ll.AccessFSExecute | ll.AccessFSWriteFile | ll.AccessFSReadFile | ll.AccessFSReadDir |
			ll.AccessFSRemoveDir | ll.AccessFSRemoveFile | ll.AccessFSMakeChar | ll.AccessFSMakeDir |
			ll.AccessFSMakeReg | ll.AccessFSMakeSock | ll.AccessFSMakeFifo | ll.AccessFSMakeBlock |
			ll.AccessFSMakeSym
	}
	if abi >= policy.LandlockABIRefer {
		h |= ll.AccessFSRefer
	}
	if abi >= policy.LandlockABITruncate {
		h |= ll.AccessFSTruncate
	}
	return h
}

// LandlockPlan is a profile's Landlock ruleset fitted to one kernel ABI: what the
// spawner will enforce, and what the policy asked for that this kernel cannot.
type LandlockPlan struct {
	// ABI is the running kernel's Landlock ABI (0: none).
	ABI int
	// Enabled is false when nothing can be enforced (ABI 0 under best_effort).
	Enabled bool
	// HandledFS, HandledNet and Scoped are the sets handed to landlock_create_ruleset.
	HandledFS, HandledNet, Scoped uint64
	// Rules grant rights beneath paths.
	Rules []PathRule
	// ConnectTCP and BindTCP are the allowed ports (when HandledNet covers them).
	ConnectTCP, BindTCP []uint16
	// Unenforced lists what the policy asked for and this kernel cannot enforce, as
	// "landlock: net.tcp (needs ABI 4, have 2)".
	Unenforced []string
	// Degraded lists what works less well than asked without weakening the sandbox
	// (for example cross-directory renames refused on ABI 1).
	Degraded []string
}

// PathRule grants Access beneath each of Paths.
type PathRule struct {
	Access uint64
	Paths  []string
}

// FeatureError is a kernel feature the policy requires and the host lacks.
type FeatureError struct{ Feature, Have, Want string }

func (e *FeatureError) Error() string {
	return fmt.Sprintf("%s: have %s, need %s", e.Feature, e.Have, e.Want)
}

// ErrNotSupported is matched by every FeatureError: sys.ErrNotSupported, the one
// error every missing-feature error of agentexec matches.
var ErrNotSupported = sys.ErrNotSupported

// Is makes FeatureError match ErrNotSupported and errors.ErrUnsupported.
func (e *FeatureError) Is(t error) bool { return t == ErrNotSupported || t == errors.ErrUnsupported }

// PlanLandlock fits a profile's rules to Landlock ABI abi. It is pure: the same
// profile and ABI give the same plan on every machine. With landlock: require, a rule
// the ABI cannot enforce is an error naming the feature; with best_effort it is listed
// in Unenforced.
func PlanLandlock(p *policy.Profile, abi int) (*LandlockPlan, error) {
	plan := &LandlockPlan{ABI: abi}
	// The policy package owns the table of which feature needs which ABI and which
	// are required (docs/policy.md); this only fits it to the kernel.
	var missing []policy.LandlockFeature
	for _, f := range p.LandlockFeatures() {
		if abi >= f.ABI {
			continue
		}
		if f.Required {
			missing = append(missing, f)
			plan.Unenforced = append(plan.Unenforced, fmt.Sprintf("landlock: %s (needs ABI %d, have %d)", f.Name, f.ABI, abi))
		} else {
			plan.Degraded = append(plan.Degraded, fmt.Sprintf("landlock: %s unavailable (needs ABI %d, have %d)", f.Name, f.ABI, abi))
		}
	}
	if len(missing) > 0 && p.Enforcement.Landlock != policy.BestEffort {
		var names []string
		want := 0
		for _, f := range missing {
			names = append(names, fmt.Sprintf("%s (ABI %d)", f.Name, f.ABI))
			want = max(want, f.ABI)
		}
		return nil, fmt.Errorf("profile %s: landlock: require: %w", p.Name,
			&FeatureError{Feature: "landlock " + strings.Join(names, ", "), Have: fmt.Sprintf("ABI %d", abi), Want: fmt.Sprintf("ABI %d", want)})
	}
	if abi < policy.LandlockABIFS {
		return plan, nil
	}
	plan.Enabled = true
	plan.HandledFS = handledFS(abi)
	if abi >= policy.LandlockABINetTCP {
		plan.HandledNet = ll.AccessNetBindTCP | ll.AccessNetConnectTCP
		plan.ConnectTCP = append([]uint16(nil), p.Network.ConnectTCP...)
		plan.BindTCP = append([]uint16(nil), p.Network.BindTCP...)
	}
	if abi >= policy.LandlockABIScope {
		if p.IPC.ScopeSignals {
			plan.Scoped |= ll.ScopeSignal
		}
		if p.IPC.ScopeAbstractUnix {
			plan.Scoped |= ll.ScopeAbstractUnixSocket
		}
	}
	add := func(access uint64, paths []string) {
		access &= plan.HandledFS
		if len(paths) > 0 && access != 0 {
			plan.Rules = append(plan.Rules, PathRule{Access: access, Paths: append([]string(nil), paths...)})
		}
	}
	add(fsRead, p.FS.Read)
	add(fsExec, p.FS.Exec)
	add(fsWrite, p.FS.Write)
	return plan, nil
}

// String renders the enforced rights for reports.
func (pl *LandlockPlan) String() string {
	if !pl.Enabled {
		return "landlock: off"
	}
	return fmt.Sprintf("landlock ABI %d: fs %v, net %v, scoped %v",
		pl.ABI, landlock.AccessFSSet(pl.HandledFS), landlock.AccessNetSet(pl.HandledNet), landlock.ScopedSet(pl.Scoped))
}

type pathRight struct {
	path   string
	access uint64
}

// pathRights merges the plan's rules per path (a path listed as read and write
// gets both), in path order, with file paths limited to the rights a file can
// have; paths that do not exist on this host are skipped and returned.
func (pl *LandlockPlan) pathRights() (rights []pathRight, skipped []string, err error) {
	merged := map[string]uint64{}
	for _, r := range pl.Rules {
		for _, p := range r.Paths {
			merged[p] |= r.Access
		}
	}
	paths := make([]string, 0, len(merged))
	for p := range merged {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		access := merged[p]
		st, err := os.Stat(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				skipped = append(skipped, p)
				continue
			}
			return nil, skipped, fmt.Errorf("landlock rule for %s: %w", p, err)
		}
		if !st.IsDir() {
			access &= fsFileOnly
		}
		rights = append(rights, pathRight{path: p, access: access})
	}
	return rights, skipped, nil
}

// restrictSelf enforces the plan on every thread of the calling process. It is
// called only in a spawner process, never in the agent's own. Paths that do not exist
// on this host are skipped and returned.
func (pl *LandlockPlan) restrictSelf() (skipped []string, err error) {
	if !pl.Enabled {
		return nil, nil
	}
	cfg, err := landlock.NewConfig(landlock.AccessFSSet(pl.HandledFS), landlock.AccessNetSet(pl.HandledNet), landlock.ScopedSet(pl.Scoped))
	if err != nil {
		return nil, fmt.Errorf("landlock config: %w", err)
	}
	var rules []landlock.Rule
	paths, skipped, err := pl.pathRights()
	if err != nil {
		return skipped, err
	}
	for _, pr := range paths {
		rules = append(rules, landlock.PathAccess(landlock.AccessFSSet(pr.access), pr.path))
	}
	for _, port := range pl.ConnectTCP {
		rules = append(rules, landlock.ConnectTCP(port))
	}
	for _, port := range pl.BindTCP {
		rules = append(rules, landlock.BindTCP(port))
	}
	return skipped, cfg.Restrict(rules...)
}

// LandlockABI returns the running kernel's Landlock ABI version, 0 with the reason
// when Landlock is absent or disabled.
func LandlockABI() (int, error) {
	v, err := ll.LandlockGetABIVersion()
	if err != nil {
		return 0, fmt.Errorf("landlock_create_ruleset(LANDLOCK_CREATE_RULESET_VERSION): %w", err)
	}
	return v, nil
}
