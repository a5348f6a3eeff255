package serve

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type lineOut struct {
	text string
	num  int64
	size int64 // for over-long lines
	long bool
}

func readAllLines(t *testing.T, r io.Reader, max int) []lineOut {
	t.Helper()
	lr := newLineReader(r, max)
	var out []lineOut
	for {
		line, num, size, err := lr.next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		if line == nil && size > 0 {
			out = append(out, lineOut{num: num, size: size, long: true})
			continue
		}
		out = append(out, lineOut{text: string(line), num: num, size: size})
	}
}

func TestLineReader(t *testing.T) {
	big := strings.Repeat("x", 300<<10) // several times bufio's buffer
	cases := []struct {
		name, in string
		max      int
		want     []lineOut
	}{
		{"simple", "a\nbb\n", 10, []lineOut{{text: "a", num: 1, size: 1}, {text: "bb", num: 2, size: 2}}},
		{"no final newline", "a\nbb", 10, []lineOut{{text: "a", num: 1, size: 1}, {text: "bb", num: 2, size: 2}}},
		{"empty lines count", "\n\na\n", 10, []lineOut{{num: 1}, {num: 2}, {text: "a", num: 3, size: 1}}},
		{"crlf", "a\r\nb\r\n", 10, []lineOut{{text: "a", num: 1, size: 2}, {text: "b", num: 2, size: 2}}},
		{"exactly max", "abcd\nabcde\nz\n", 4, []lineOut{{text: "abcd", num: 1, size: 4}, {num: 2, size: 5, long: true}, {text: "z", num: 3, size: 1}}},
		{"huge line skipped", "ok\n" + big + "\nafter\n", 1 << 10, []lineOut{{text: "ok", num: 1, size: 2}, {num: 2, size: int64(len(big)), long: true}, {text: "after", num: 3, size: 5}}},
		{"huge last line", "ok\n" + big, 1 << 10, []lineOut{{text: "ok", num: 1, size: 2}, {num: 2, size: int64(len(big)), long: true}}},
		{"huge line under a huge limit", big + "\n", 1 << 20, []lineOut{{text: big, num: 1, size: int64(len(big))}}},
		{"empty input", "", 10, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, r := range []io.Reader{strings.NewReader(c.in), iotest.OneByteReader(strings.NewReader(c.in))} {
				got := readAllLines(t, r, c.max)
				if len(got) != len(c.want) {
					t.Fatalf("got %d lines, want %d", len(got), len(c.want))
				}
				for i := range got {
					g, w := got[i], c.want[i]
					if g.num != w.num || g.long != w.long || g.size != w.size || g.text != w.text {
						t.Errorf("line %d: got num %d long %v size %d text %.20q, want num %d long %v size %d text %.20q",
							i, g.num, g.long, g.size, g.text, w.num, w.long, w.size, w.text)
					}
				}
			}
		})
	}
}

// An over-long line must not be buffered whole.
func TestLineReaderDoesNotBufferLongLines(t *testing.T) {
	const n = 64 << 20
	r := io.MultiReader(io.LimitReader(repeatReader('x'), n), strings.NewReader("\nok\n"))
	lr := newLineReader(r, 1<<10)
	_, num, size, err := lr.next()
	if err != nil || num != 1 || size != n {
		t.Fatalf("got num %d size %d err %v", num, size, err)
	}
	if cap(lr.buf) > 1<<20 {
		t.Errorf("buffer grew to %d bytes for a line over a 1 KiB limit", cap(lr.buf))
	}
	line, num, _, err := lr.next()
	if err != nil || num != 2 || !bytes.Equal(line, []byte("ok")) {
		t.Fatalf("after: %q %d %v", line, num, err)
	}
}

type repeatReader byte

func (b repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

func TestLineReaderReadError(t *testing.T) {
	boom := errors.New("boom")
	lr := newLineReader(io.MultiReader(strings.NewReader("a\n"), iotest.ErrReader(boom)), 10)
	if line, _, _, err := lr.next(); err != nil || string(line) != "a" {
		t.Fatalf("first: %q %v", line, err)
	}
	if _, _, _, err := lr.next(); !errors.Is(err, boom) {
		t.Fatalf("got %v, want the read error", err)
	}
}
