package egress

import (
	"bufio"
	"bytes"
	"net/netip"
	"testing"
)

// FuzzSOCKSRequest feeds arbitrary bytes, as a sandboxed tool may send them, to the
// SOCKS5 request parser. Properties: no panic; a request it accepts has a host that
// is an address in netip's form or a printable ASCII name, and re-encoding it gives
// exactly the bytes it consumed (nothing is read past the request, nothing is
// skipped); a refusal with a reply code is one of the codes the proxy sends.
func FuzzSOCKSRequest(f *testing.F) {
	for _, s := range [][]byte{
		{5, 1, 0, 1, 127, 0, 0, 1, 0, 80},
		append(append([]byte{5, 1, 0, 3, 11}, "example.com"...), 1, 187),
		{5, 1, 0, 4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 22},
		{5, 2, 0, 1, 10, 0, 0, 1, 0, 0},
		{5, 1, 1, 1, 1, 2, 3, 4, 0, 1},
		{5, 1, 0, 3, 0, 0, 80},
		{5, 1, 0, 3, 3, 'a', ' ', 'b', 0, 80},
		{5, 1, 0, 9},
		{4, 1, 0, 1},
		{},
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// A buffer that holds all of data: what the parser left is br.Buffered().
		br := bufio.NewReaderSize(bytes.NewReader(data), max(16, len(data)))
		r, code, err := readSOCKSRequest(br)
		if err != nil {
			switch code {
			case 0, socksGeneralFailure, socksATYPNotSupported:
			default:
				t.Fatalf("reply code %#x for %v", code, err)
			}
			return
		}
		consumed := len(data) - br.Buffered()
		var enc []byte
		if a, perr := netip.ParseAddr(r.host); perr == nil && data[3] != socksATYPDomain {
			if a.Is4() {
				b := a.As4()
				enc = append([]byte{5, r.cmd, 0, socksATYPIPv4}, b[:]...)
			} else {
				b := a.As16()
				enc = append([]byte{5, r.cmd, 0, socksATYPIPv6}, b[:]...)
			}
		} else {
			for i := 0; i < len(r.host); i++ {
				if c := r.host[i]; c <= ' ' || c >= 0x7f {
					t.Fatalf("accepted name %q is not printable ASCII", r.host)
				}
			}
			if r.host == "" || len(r.host) > 255 {
				t.Fatalf("accepted name of length %d", len(r.host))
			}
			enc = append([]byte{5, r.cmd, 0, socksATYPDomain, byte(len(r.host))}, r.host...)
		}
		enc = append(enc, byte(r.port>>8), byte(r.port))
		if !bytes.Equal(enc, data[:consumed]) {
			t.Fatalf("request %+v re-encodes as %x, the parser consumed %x", r, enc, data[:consumed])
		}
	})
}
