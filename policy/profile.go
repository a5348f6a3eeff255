package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
)

// profileOf computes the sandbox rules of merged settings, with built-in defaults for
// what neither defaults: nor the tool set.
func profileOf(m *rules, opts Options) Profile {
	p := Profile{
		FS: FS{
			Read:    sortedSet(values(m.read.items)),
			Write:   sortedSet(values(m.write.items)),
			Exec:    sortedSet(values(m.exec.items)),
			Protect: sortedSet(values(m.protect.items)),
		},
		Network: Network{
			ConnectTCP:  sortedSet(values(m.connect.items)),
			BindTCP:     sortedSet(values(m.bind.items)),
			Unix:        m.unix.v || len(m.unixSockets.items) > 0,
			UnixSockets: sortedSet(values(m.unixSockets.items)),
			Isolated:    m.isolated.v,
			Egress:      len(m.egress.allow.items)+len(m.egress.ssh.items) > 0, // egress.go
		},
		IPC: IPC{
			ScopeAbstractUnix: valueOr(m.scopeAbstract, true),
			ScopeSignals:      valueOr(m.scopeSignals, true),
		},
		Limits:      Limits{Memory: m.memory.v, Pids: m.pids.v, CPU: m.cpu.v},
		Enforcement: EnforcementRules{Landlock: valueOr(m.landlock, DefaultLandlock), Cgroup: valueOr(m.cgroup, DefaultCgroup)},
		Concurrency: valueOr(m.concurrency, 2*opts.CPUs),
		User:        m.user.v,
	}
	return p
}

func valueOr[T any](o opt[T], def T) T {
	if o.set {
		return o.v
	}
	return def
}

// sortedSet sorts and de-duplicates; nil for an empty set.
func sortedSet[T cmp.Ordered](in []T) []T {
	if len(in) == 0 {
		return nil
	}
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

// key is a canonical text of the rules that decide a spawner: two profiles with the
// same key can share one spawner and one Landlock ruleset. Built by hand (every
// list with its length, strings quoted): fmt's reflection made it a fifth of a
// policy load, which every one-shot run pays (docs/performance.md).
func (p *Profile) key() string {
	b := make([]byte, 0, 512)
	strs := func(l []string) {
		b = strconv.AppendInt(b, int64(len(l)), 10)
		for _, s := range l {
			b = strconv.AppendQuote(append(b, ','), s)
		}
		b = append(b, '|')
	}
	ports := func(l []uint16) {
		b = strconv.AppendInt(b, int64(len(l)), 10)
		for _, n := range l {
			b = strconv.AppendUint(append(b, ','), uint64(n), 10)
		}
		b = append(b, '|')
	}
	flag := func(v bool) { b = append(strconv.AppendBool(b, v), '|') }
	word := func(s string) { b = append(strconv.AppendQuote(b, s), '|') }
	strs(p.FS.Read)
	strs(p.FS.Write)
	strs(p.FS.Exec)
	strs(p.FS.Protect)
	ports(p.Network.ConnectTCP)
	ports(p.Network.BindTCP)
	flag(p.Network.Unix)
	strs(p.Network.UnixSockets)
	word(string(p.Network.Isolated))
	flag(p.Network.Egress)
	flag(p.IPC.ScopeAbstractUnix)
	flag(p.IPC.ScopeSignals)
	b = append(strconv.AppendInt(b, p.Limits.Memory, 10), '|')
	b = append(strconv.AppendInt(b, p.Limits.Pids, 10), '|')
	b = append(strconv.AppendFloat(b, p.Limits.CPU, 'g', -1, 64), '|')
	word(string(p.Enforcement.Landlock))
	word(string(p.Enforcement.Cgroup))
	b = append(strconv.AppendInt(b, int64(p.Concurrency), 10), '|')
	if u := p.User; u == nil {
		b = append(b, "none"...)
	} else {
		b = strconv.AppendUint(b, uint64(u.UID), 10)
		b = strconv.AppendUint(append(b, ':'), uint64(u.GID), 10)
		for _, g := range u.Groups {
			b = strconv.AppendUint(append(b, ','), uint64(g), 10)
		}
		flag(u.Own)
	}
	return string(b)
}

// Equal reports whether two profiles have the same sandbox rules (names and tool
// lists aside).
func (p *Profile) Equal(q *Profile) bool { return p.key() == q.key() }

// group replaces each tool's provisional profile with a shared one: tools whose rules
// are identical get the same *Profile. A profile identical to the defaults is named
// "default"; any other is named after its first tool.
func (p *Policy) group(defaults Profile) {
	defKey := defaults.key()
	byKey := map[string]*Profile{}
	names := map[string]bool{}
	p.Profiles = nil
	for _, t := range p.Tools {
		k := t.Profile.key()
		prof, ok := byKey[k]
		if !ok {
			prof = t.Profile
			prof.Name = t.Name
			if k == defKey {
				prof.Name = "default"
			}
			for i := 2; names[prof.Name]; i++ {
				prof.Name = fmt.Sprintf("%s#%d", t.Name, i)
			}
			names[prof.Name] = true
			byKey[k] = prof
			p.Profiles = append(p.Profiles, prof)
		}
		prof.Tools = append(prof.Tools, t.Name)
		t.Profile = prof
	}
}

// LandlockFeature is one Landlock feature a profile's rules rely on.
type LandlockFeature struct {
	// Name is "fs", "refer", "truncate", "net_tcp", "ioctl_dev",
	// "scope_abstract_unix" or "scope_signals".
	Name string
	// ABI is the first Landlock ABI version that has the feature.
	ABI int
	// Required marks features without which a rule of the profile goes unenforced:
	// under landlock: require, a kernel that lacks one is an error at start. The
	// others ("refer": renames and links inside write roots; "ioctl_dev") only make
	// the sandbox work better or tighter, and are reported when missing.
	Required bool
}

// LandlockFeatures lists the Landlock features the profile uses, by ABI version
// (docs/policy.md has the table and what each enforcement mode does without them).
func (p *Profile) LandlockFeatures() []LandlockFeature {
	f := []LandlockFeature{{Name: "fs", ABI: LandlockABIFS, Required: true}}
	if len(p.FS.Write) > 0 {
		f = append(f, LandlockFeature{Name: "refer", ABI: LandlockABIRefer})
	}
	f = append(f, LandlockFeature{Name: "truncate", ABI: LandlockABITruncate, Required: true})
	// An empty network namespace that must exist makes TCP rules moot, unless the
	// policy lists ports (which an empty namespace could not reach anyway).
	netRequired := p.Network.Isolated != Require || len(p.Network.ConnectTCP)+len(p.Network.BindTCP) > 0
	f = append(f, LandlockFeature{Name: "net_tcp", ABI: LandlockABINetTCP, Required: netRequired},
		LandlockFeature{Name: "ioctl_dev", ABI: LandlockABIIoctlDev})
	if p.IPC.ScopeAbstractUnix {
		f = append(f, LandlockFeature{Name: "scope_abstract_unix", ABI: LandlockABIScope, Required: true})
	}
	if p.IPC.ScopeSignals {
		f = append(f, LandlockFeature{Name: "scope_signals", ABI: LandlockABIScope, Required: true})
	}
	return f
}

// MinLandlockABI is the lowest Landlock ABI version that enforces every required
// feature of the profile: what landlock: require asks of the kernel.
func (p *Profile) MinLandlockABI() int {
	abi := 1
	for _, f := range p.LandlockFeatures() {
		if f.Required {
			abi = max(abi, f.ABI)
		}
	}
	return abi
}
