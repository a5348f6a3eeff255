package testutil

import (
	"net"
	"testing"
)

// AcceptAll accepts connections on l and closes each at once, until l is closed:
// a listener that a connect(2) reaches and that holds nothing open.
func AcceptAll(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// LoopbackTCP listens on 127.0.0.1 at a free TCP port, accepting and closing every
// connection (AcceptAll) until the test ends, and returns the port.
func LoopbackTCP(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go AcceptAll(l)
	return l.Addr().(*net.TCPAddr).Port
}
