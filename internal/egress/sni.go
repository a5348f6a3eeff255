package egress

import (
	"bufio"
	"errors"
)

// peekSNI reads (without consuming) the TLS ClientHello at the front of r and
// returns its server_name ("" when it has none). It reads one TLS record: a
// ClientHello split over several records is reported as an error (no common
// client does that below 16 KiB).
func peekSNI(r *bufio.Reader) (string, error) {
	hdr, err := r.Peek(5)
	if err != nil {
		return "", err
	}
	if hdr[0] != 0x16 {
		return "", errors.New("not a TLS handshake record")
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	if n > 1<<14 {
		return "", errors.New("TLS record too long")
	}
	rec, err := r.Peek(5 + n)
	if err != nil {
		return "", err
	}
	b := rec[5:]
	if len(b) < 4 || b[0] != 1 {
		return "", errors.New("first handshake message is not a ClientHello")
	}
	hl := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	if hl > len(b)-4 {
		return "", errors.New("ClientHello split over several TLS records")
	}
	c := cursor(b[4 : 4+hl])
	if !c.skip(2+32) || !c.skipVec(1) || !c.skipVec(2) || !c.skipVec(1) {
		return "", errors.New("malformed ClientHello")
	}
	if len(c) == 0 {
		return "", nil // no extensions
	}
	exts, ok := c.vec(2)
	if !ok {
		return "", errors.New("malformed ClientHello extensions")
	}
	for len(exts) > 0 {
		typ, ok1 := exts.u16()
		body, ok2 := exts.vec(2)
		if !ok1 || !ok2 {
			return "", errors.New("malformed ClientHello extension")
		}
		if typ != 0 { // server_name
			continue
		}
		list, ok := body.vec(2)
		if !ok {
			return "", errors.New("malformed server_name extension")
		}
		for len(list) > 0 {
			if len(list) < 1 {
				break
			}
			nameType := list[0]
			list = list[1:]
			name, ok := list.vec(2)
			if !ok {
				return "", errors.New("malformed server_name entry")
			}
			if nameType == 0 {
				return string(name), nil
			}
		}
		return "", nil
	}
	return "", nil
}

// cursor reads big-endian TLS vectors.
type cursor []byte

func (c *cursor) skip(n int) bool {
	if len(*c) < n {
		return false
	}
	*c = (*c)[n:]
	return true
}

func (c *cursor) u16() (int, bool) {
	if len(*c) < 2 {
		return 0, false
	}
	v := int((*c)[0])<<8 | int((*c)[1])
	*c = (*c)[2:]
	return v, true
}

// vec reads a vector with a lenBytes-byte length (1 or 2).
func (c *cursor) vec(lenBytes int) (cursor, bool) {
	if len(*c) < lenBytes {
		return nil, false
	}
	n := int((*c)[0])
	if lenBytes == 2 {
		n = n<<8 | int((*c)[1])
	}
	if len(*c) < lenBytes+n {
		return nil, false
	}
	v := (*c)[lenBytes : lenBytes+n]
	*c = (*c)[lenBytes+n:]
	return v, true
}

func (c *cursor) skipVec(lenBytes int) bool {
	_, ok := c.vec(lenBytes)
	return ok
}
