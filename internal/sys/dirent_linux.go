//go:build linux

package sys

import (
	"encoding/binary"
	"errors"
	"iter"

	"golang.org/x/sys/unix"
)

// Field offsets of struct linux_dirent64, the record getdents64(2) fills its buffer
// with (Linux include/linux/dirent.h; glibc's struct dirent64 and x/sys/unix's
// Dirent have the same layout): d_ino __u64, d_off __s64, d_reclen unsigned short,
// d_type unsigned char, then d_name, NUL-terminated and padded to d_reclen.
const (
	direntInoOff    = 0
	direntReclenOff = 16
	direntTypeOff   = 18
	direntNameOff   = 19
)

// Getdents reads entries of the directory open at fd into buf with getdents64(2):
// as many whole records as fit, 0 at the end of the directory. EINTR is retried.
// Dirents walks the result.
func Getdents(fd int, buf []byte) (int, error) {
	for {
		n, err := unix.Getdents(fd, buf)
		if !errors.Is(err, unix.EINTR) {
			return n, err
		}
	}
}

// Dirents yields the name and d_type (unix.DT_DIR, DT_REG, DT_LNK, …, or
// DT_UNKNOWN where the filesystem does not say) of each record in buf, a
// getdents64(2) result. "." and "..", and records without an inode number, are
// skipped; a truncated record ends the walk. name aliases buf: copy it to keep it
// past the next Getdents into the same buffer. Nothing is allocated.
func Dirents(buf []byte) iter.Seq2[[]byte, uint8] {
	return func(yield func([]byte, uint8) bool) {
		for len(buf) > direntNameOff {
			reclen := int(binary.NativeEndian.Uint16(buf[direntReclenOff:]))
			if reclen <= direntNameOff || reclen > len(buf) {
				return
			}
			rec := buf[:reclen]
			buf = buf[reclen:]
			if binary.NativeEndian.Uint64(rec[direntInoOff:]) == 0 {
				continue
			}
			name := rec[direntNameOff:]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			if string(name) == "." || string(name) == ".." {
				continue
			}
			if !yield(name, rec[direntTypeOff]) {
				return
			}
		}
	}
}
