package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
)

// cpioWriter writes a cpio archive in the "newc" format (magic 070701), the format
// the kernel unpacks into the initramfs (Linux Documentation/driver-api/
// early-userspace/buffer-format.rst). Archives may be concatenated: the kernel
// unpacks each in turn, later entries overriding earlier ones.
type cpioWriter struct {
	w   *bufio.Writer
	n   int64 // bytes written
	ino uint32
	err error
}

const (
	cpioModeDir     = 0o040000
	cpioModeFile    = 0o100000
	cpioModeSymlink = 0o120000
	cpioModeChar    = 0o020000
)

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<20), ino: 1000}
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad(to int64) {
	if r := c.n % to; r != 0 {
		c.write(make([]byte, to-r))
	}
}

// header writes one entry header and its name, padded to 4 bytes.
func (c *cpioWriter) header(name string, mode uint32, size int64, nlink, rdevMajor, rdevMinor uint32) {
	if size > 0xffffffff {
		c.err = fmt.Errorf("cpio entry %s: size %d exceeds the newc format's 4 GiB", name, size)
		return
	}
	c.ino++
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.write([]byte(h))
	c.write([]byte(name))
	c.write([]byte{0})
	c.pad(4)
}

// Dir adds a directory.
func (c *cpioWriter) Dir(name string, perm uint32) {
	c.header(name, cpioModeDir|perm, 0, 2, 0, 0)
}

// File adds a regular file with the given content.
func (c *cpioWriter) File(name string, perm uint32, data []byte) {
	c.header(name, cpioModeFile|perm, int64(len(data)), 1, 0, 0)
	c.write(data)
	c.pad(4)
}

// FileFrom adds a regular file copied from the host path src.
func (c *cpioWriter) FileFrom(name string, perm uint32, src string) {
	if c.err != nil {
		return
	}
	f, err := os.Open(src)
	if err != nil {
		c.err = err
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		c.err = err
		return
	}
	c.header(name, cpioModeFile|perm, st.Size(), 1, 0, 0)
	if c.err != nil {
		return
	}
	n, err := io.Copy(c.w, f)
	c.n += n
	if err != nil {
		c.err = fmt.Errorf("copy %s into cpio: %w", src, err)
		return
	}
	if n != st.Size() {
		c.err = fmt.Errorf("copy %s into cpio: file changed size (%d != %d)", src, n, st.Size())
		return
	}
	c.pad(4)
}

// Symlink adds a symbolic link name -> target.
func (c *cpioWriter) Symlink(name, target string) {
	c.header(name, cpioModeSymlink|0o777, int64(len(target)), 1, 0, 0)
	c.write([]byte(target))
	c.pad(4)
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm, major, minor uint32) {
	c.header(name, cpioModeChar|perm, 0, 1, major, minor)
}

// Close writes the trailer, pads the archive to 512 bytes (so that another archive
// can follow) and flushes. It does not close the underlying writer.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0, 1, 0, 0)
	c.pad(512)
	if c.err != nil {
		return c.err
	}
	return c.w.Flush()
}
