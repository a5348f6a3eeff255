package policy

import (
	"strings"
	"testing"
)

// user: root keeps the runtime's own identity; no user: leaves the choice to the
// runtime (its tool identity when root); a mapping names an identity.
func TestUserSettings(t *testing.T) {
	p := mustParse(t, base+"  rootcat: {exec: cat, user: root}\n  idcat: {exec: cat, user: {uid: 1000, gid: 1000}}\n")
	get := func(name string) *User {
		tl, _ := p.Tool(name)
		return tl.Profile.User
	}
	if u := get("cat"); u != nil || u.RunsAsRoot(0) {
		t.Errorf("no user: %+v, want nil and not root", u)
	}
	if u := get("rootcat"); u == nil || !u.Own || !u.RunsAsRoot(0) || u.RunsAsRoot(1000) {
		t.Errorf("user: root = %+v; want Own, root under a root runtime only", u)
	}
	if u := get("idcat"); u == nil || u.Own || u.UID != 1000 || u.RunsAsRoot(0) {
		t.Errorf("user: {uid: 1000} = %+v", u)
	}
	if get("cat") == get("rootcat") || get("rootcat") == get("idcat") {
		t.Errorf("different users share a profile")
	}
}

func TestUserAndUnixSocketErrors(t *testing.T) {
	for _, c := range []struct{ name, src, want string }{
		{"unknown user word", base + "  x: {exec: cat, user: admin}\n",
			`p.yaml:8:24: tools.x.user: "admin": want root, null or {uid: N, gid: N, groups: [...]}`},
		{"unix for root tools", base + "  x: {exec: cat, user: root, network: {unix: true}}\n",
			`p.yaml:8:46: tools.x.network.unix: true while the tools run as uid 0`},
		{"unix for uid 0 tools", base + "  x: {exec: cat, user: {uid: 0, gid: 0}, network: {unix: true}}\n",
			`p.yaml:8:58: tools.x.network.unix: true while the tools run as uid 0`},
		{"relative socket path", base + "  x: {exec: cat, network: {unix_sockets: [run/x.sock]}}\n",
			`p.yaml:8:43: tools.x.network.unix_sockets[0]: "run/x.sock" is not an absolute path`},
		{"root by default, unix in a tool", "version: 1\ndefaults:\n  filesystem: {read: [/usr], exec: [/usr]}\n  user: root\n  network: {unix: true}\ntools: {cat: {}}\n",
			`p.yaml:5:19: defaults.network.unix: true while the tools run as uid 0`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(c.src), testOpts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
	// Named sockets make unix: true acceptable for root tools, and imply it.
	p := mustParse(t, base+"  x: {exec: cat, user: root, network: {unix: true, unix_sockets: [/run/x.sock]}}\n  y: {exec: cat, network: {unix_sockets: [/run/y.sock]}}\n")
	for _, name := range []string{"x", "y"} {
		tl, _ := p.Tool(name)
		if n := tl.Profile.Network; !n.Unix || len(n.UnixSockets) != 1 {
			t.Errorf("%s: network %+v, want unix with one socket", name, n)
		}
	}
}
