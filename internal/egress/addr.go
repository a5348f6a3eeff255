package egress

import (
	"net/netip"
)

// refusedRange is an address range the proxy never connects to unless an
// IP-literal allow entry names the address (docs/network.md lists them).
type refusedRange struct {
	prefix netip.Prefix
	what   string
}

var refusedRanges = func() []refusedRange {
	var out []refusedRange
	for _, r := range []struct{ p, what string }{
		{"0.0.0.0/8", "unspecified (this network)"},
		{"127.0.0.0/8", "loopback"},
		{"10.0.0.0/8", "private (RFC 1918)"},
		{"172.16.0.0/12", "private (RFC 1918)"},
		{"192.168.0.0/16", "private (RFC 1918)"},
		{"100.64.0.0/10", "shared address space (CGNAT, RFC 6598)"},
		{"169.254.0.0/16", "link-local (cloud metadata)"},
		{"192.0.0.0/24", "IETF protocol assignments"},
		{"224.0.0.0/4", "multicast"},
		{"240.0.0.0/4", "reserved (and broadcast)"},
		{"::/128", "unspecified"},
		{"::1/128", "loopback"},
		{"::ffff:0:0/96", "IPv4-mapped IPv6"},
		{"64:ff9b:1::/48", "local-use NAT64"},
		{"fc00::/7", "unique local (ULA, cloud metadata)"},
		{"fe80::/10", "link-local"},
		{"fec0::/10", "site-local (deprecated)"},
		{"ff00::/8", "multicast"},
	} {
		out = append(out, refusedRange{netip.MustParsePrefix(r.p), r.what})
	}
	return out
}()

// refused says why the proxy will not connect to ip ("" when it may): it names
// the refused range ip lies in. Addresses of the NAT64 well-known prefix
// (64:ff9b::/96) are judged by the IPv4 address they embed.
func refused(ip netip.Addr) string {
	ip = ip.WithZone("")
	if !ip.IsValid() {
		return "invalid address"
	}
	if ip.Is6() && nat64.Contains(ip) {
		b := ip.As16()
		if why := refused(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})); why != "" {
			return "NAT64 of " + why
		}
		return ""
	}
	for _, r := range refusedRanges {
		if r.prefix.Contains(ip) {
			return r.what
		}
	}
	return ""
}

var nat64 = netip.MustParsePrefix("64:ff9b::/96")
