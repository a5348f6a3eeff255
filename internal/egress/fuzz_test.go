package egress

import (
	"bufio"
	"bytes"
	"net/netip"
	"testing"

	"golang.org/x/crypto/ssh"
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

// FuzzCheckUserAuth feeds arbitrary data, as a sandboxed tool may ask the agent to
// sign it, to the filter that decides whether the forwarded agent signs. Property:
// what it accepts is exactly a user-authentication request (type 50) of the bound
// session for the asked key, by public key, with nothing after it, or host-bound
// to the session's host key: re-encoding what was parsed gives back the data.
func FuzzCheckUserAuth(f *testing.F) {
	sid, blob, hk := []byte("session-1"), []byte("key-blob"), []byte("host-key")
	req := func(method string, rest ...[]byte) []byte {
		b := ssh.Marshal(userAuthRequest{sid, 50, "git", "ssh-connection", method, true, "ssh-ed25519", blob, nil})
		for _, r := range rest {
			b = append(b, ssh.Marshal(struct{ B []byte }{r})...)
		}
		return b
	}
	f.Add(req("publickey"))
	f.Add(req("publickey-hostbound-v00@openssh.com", hk))
	f.Add(req("publickey-hostbound-v00@openssh.com", []byte("evil")))
	f.Add(req("publickey", []byte("x")))
	f.Add(req("hostbased"))
	f.Add([]byte("SSHSIG arbitrary data"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if checkUserAuth(data, sid, blob, hk) != nil {
			return
		}
		var u userAuthRequest
		if err := ssh.Unmarshal(data, &u); err != nil {
			t.Fatalf("accepted data that does not parse: %v", err)
		}
		u.Rest = nil // re-encoded below
		if u.Type != 50 || !bytes.Equal(u.SessionID, sid) || !u.HasSig || !bytes.Equal(u.PubKey, blob) {
			t.Fatalf("accepted %+v", u)
		}
		want := ssh.Marshal(u)
		switch u.Method {
		case "publickey":
		case "publickey-hostbound-v00@openssh.com":
			want = append(want, ssh.Marshal(struct{ B []byte }{hk})...)
		default:
			t.Fatalf("accepted method %q", u.Method)
		}
		// A boolean is true for any byte but 0 (RFC 4251 section 5): the data's
		// HasSig byte is made 1 before comparing.
		norm := bytes.Clone(data)
		if off := 4 + len(u.SessionID) + 1 + 4 + len(u.User) + 4 + len(u.Service) + 4 + len(u.Method); off < len(norm) && norm[off] != 0 {
			norm[off] = 1
		}
		if !bytes.Equal(want, norm) {
			t.Fatalf("accepted %x, which is not the request it parses as (%x)", data, want)
		}
	})
}
