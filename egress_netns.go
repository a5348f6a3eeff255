package agentexec

import (
	"fmt"
	"net"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/agentexec/agentexec/internal/contain"
	"github.com/agentexec/agentexec/internal/egress"
	"github.com/agentexec/agentexec/internal/spawner"
	"github.com/agentexec/agentexec/policy"
)

// The egress namespace (docs/network.md, "The network namespace"). With the
// runtime able to create network namespaces (CAP_SYS_ADMIN: root), the tools of
// a profile with egress sit in an empty network namespace of the profile's own
// whose only way out is the proxy: its loopback is up and holds one listener,
// 127.0.0.1:PORT with the proxy's own port, served by the proxy (HTTP and
// SOCKS5), so the tools' HTTP_PROXY is the same URL as without the namespace.
// Nothing else is reachable: no other address (ENETUNREACH: no route but
// loopback), no other port of the namespace's loopback (nothing listens), no
// abstract unix socket of the host, no resolver (name resolution is the
// proxy's). Without the capability, Landlock's TCP rules confine the tools to
// the proxy's port, which leaves that port on other hosts reachable.

// egressNetNSWanted says whether a profile's tools get the egress namespace
// when the host allows it: a profile with egress that asks for network.isolated,
// or that has no TCP ports of its own (connect_tcp/bind_tcp reach every host
// directly, which an empty namespace would take away: such a profile keeps the
// host's network and Landlock's port rules unless it asks for isolated).
func egressNetNSWanted(prof *policy.Profile) bool {
	n := prof.Network
	return n.Egress && (n.Isolated != "" || len(n.ConnectTCP)+len(n.BindTCP) == 0)
}

// egressNetNS gives the profile's spawner the egress namespace when it is
// wanted and this process can create network namespaces: the spawner's starter
// thread unshares it and opens the listener there (egressNamespace), so the
// spawner, every restart of it, and all their tools are in it. It returns
// whether it did; when not, profileNetwork goes on as for any profile (an
// isolated profile's `require` fails, best_effort is listed as unenforced, and
// the proxy's port is in the Landlock connect rules either way: egressPlan).
func (rt *Runtime) egressNetNS(prt *profileRT, cfg *spawner.SpawnerConfig) bool {
	if rt.egress == nil || !egressNetNSWanted(prt.p) {
		return false
	}
	if ok, _ := contain.NetNSAvailable(); !ok {
		return false
	}
	p := rt.egress
	cfg.StarterSetup = func() error { return egressNamespace(p) }
	prt.layers = append(prt.layers, "netns")
	return true
}

// egressNamespace runs on a locked thread (the spawner's starter, which forks
// every spawner of the profile and never returns to the host's namespace): it
// moves the thread into a new network namespace, brings its loopback up and
// makes the proxy serve a listener on 127.0.0.1 with the proxy's port there.
// The listener's socket keeps the namespace alive; the proxy closes it at Close.
func egressNamespace(p *egress.Proxy) error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("egress namespace: unshare(CLONE_NEWNET): %w (needs CAP_SYS_ADMIN)", err)
	}
	if err := loopbackUp(); err != nil {
		return fmt.Errorf("egress namespace: %w", err)
	}
	ln, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.Port())))
	if err != nil {
		return fmt.Errorf("egress namespace: proxy listener: %w", err)
	}
	if err := p.Serve(ln); err != nil {
		return fmt.Errorf("egress namespace: %w", err)
	}
	return nil
}

// loopbackUp sets IFF_UP on the calling thread's network namespace's "lo".
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket for lo: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS lo up: %w", err)
	}
	return nil
}

// egressConfinement says, for `check` and the docs, how a profile's egress
// tools are kept to the proxy on this host, and what else they can reach:
// mode "netns" (the egress namespace) or "landlock" (the proxy's port on every
// address). netnsOK and why are contain.NetNSAvailable's answer.
func egressConfinement(prof *policy.Profile, netnsOK bool, why string) (mode, reach string) {
	n := prof.Network
	if egressNetNSWanted(prof) && netnsOK {
		return "netns", "an empty network namespace whose only listener is the egress proxy on 127.0.0.1 and its port: no other address, port, abstract unix socket or resolver is reachable"
	}
	var cause string
	switch {
	case egressNetNSWanted(prof):
		cause = "no network namespace here (" + why + ")"
	default:
		cause = fmt.Sprintf("the profile has its own TCP ports (connect_tcp %v, bind_tcp %v), which reach every host directly; set network.isolated to trade them for the namespace", n.ConnectTCP, n.BindTCP)
	}
	return "landlock", "Landlock allows TCP connections to the proxy's port (chosen at start) on every address, not only the proxy's: a server on that port on any other host (or another loopback address) is reachable directly, around the allow list; " + cause
}

// ProfileEgressReport is `check`'s account of a profile with egress tools.
type ProfileEgressReport struct {
	// Mode is "netns" (an empty network namespace whose only way out is the
	// proxy's listener) or "landlock" (Landlock's TCP rules allow the proxy's
	// port, on every address).
	Mode string `json:"mode"`
	// Reach says in words what the profile's tools can reach besides the allow
	// lists, and why (for "landlock": the proxy's port on every other host).
	Reach string `json:"reach"`
}
