package cgroup

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkPoolGetRelease measures the launch-path cost of the pool alone: Get, then
// Release of the empty group (one pread of cgroup.events, the counter preads, no
// mkdir/rmdir).
func BenchmarkPoolGetRelease(b *testing.B) {
	m := newManager(b, Options{})
	p, err := m.NewPool("bench", Limits{Memory: 256 << 20, Pids: 512, CPU: 1}, 4, 4)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		g, err := p.Get()
		if err != nil {
			b.Fatal(err)
		}
		g.Release()
	}
}

// BenchmarkLaunch runs /bin/true three ways in the same run: without a cgroup, in a
// pooled cgroup (clone3 CLONE_INTO_CGROUP, Get/Usage/Release), and in a cgroup made
// by mkdir and removed by rmdir per launch.
func BenchmarkLaunch(b *testing.B) {
	const tool = "/bin/true"
	if _, err := os.Stat(tool); err != nil {
		b.Skipf("needs %s: %v", tool, err)
	}
	b.Run("nocgroup", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := exec.Command(tool).Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pooled", func(b *testing.B) {
		m := newManager(b, Options{})
		p, err := m.NewPool("launch", Limits{Memory: 256 << 20, Pids: 512, CPU: 1}, 4, 4)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			g, err := p.Get()
			if err != nil {
				b.Fatal(err)
			}
			c := exec.Command(tool)
			c.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: g.FD()}
			if err := c.Run(); err != nil {
				b.Fatal(err)
			}
			if _, err := g.Usage(); err != nil {
				b.Fatal(err)
			}
			g.Release()
		}
	})
	b.Run("mkdir", func(b *testing.B) {
		m := newManager(b, Options{})
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			i++
			dir := filepath.Join(m.Base(), "m-"+strconv.Itoa(i))
			if err := unix.Mkdir(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			c := exec.Command(tool)
			c.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
			if err := c.Run(); err != nil {
				b.Fatal(err)
			}
			unix.Close(fd)
			if err := unix.Rmdir(dir); err != nil {
				b.Fatal(err)
			}
		}
	})
}
