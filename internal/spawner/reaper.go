package spawner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// reaper waits for every child of the spawner in one goroutine: each child's pidfd
// is in an epoll set, and a pidfd becomes readable when its process exits, so one
// epoll_wait covers all launches in flight and returns the exits that happened
// together in one batch. A readable pidfd means the child is a zombie: wait4 with
// WNOHANG then collects its status and rusage without blocking. Compared with one
// goroutine blocked in wait4 per child, a launch costs no goroutine, no thread
// handoff and no extra blocked thread.
type reaper struct {
	epfd   int
	stopfd int // an eventfd in the set: written by stop, it ends run

	mu       sync.Mutex
	children map[int32]reaped // by pidfd
	done     func(r reaped, ws unix.WaitStatus, ru *unix.Rusage, err error)
}

// reaped is a child the reaper waits for.
type reaped struct {
	id    uint64
	pid   int
	pidfd int
}

func newReaper(done func(r reaped, ws unix.WaitStatus, ru *unix.Rusage, err error)) (*reaper, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	stopfd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(stopfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, stopfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(stopfd)
		return nil, fmt.Errorf("epoll_ctl(ADD, eventfd): %w", err)
	}
	return &reaper{epfd: epfd, stopfd: stopfd, children: map[int32]reaped{}, done: done}, nil
}

// stop makes run return and close the reaper's fds; children not reaped yet are
// left to the caller. The spawner never stops its reaper (it reaps until it exits).
func (rp *reaper) stop() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1) // an eventfd takes a native uint64
	_, _ = unix.Write(rp.stopfd, one[:])
}

// add hands the child over; the reaper owns (and closes) pidfd from now on. A child
// that exited already is reported at the next epoll_wait (level-triggered).
func (rp *reaper) add(c reaped) error {
	rp.mu.Lock()
	rp.children[int32(c.pidfd)] = c
	rp.mu.Unlock()
	// One-shot: a pidfd reports once. (The main process holds another reference to
	// the same pidfd file, so closing ours alone would not take it out of the set.)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(c.pidfd)}
	if err := unix.EpollCtl(rp.epfd, unix.EPOLL_CTL_ADD, c.pidfd, &ev); err != nil {
		rp.mu.Lock()
		delete(rp.children, int32(c.pidfd))
		rp.mu.Unlock()
		return fmt.Errorf("epoll_ctl(ADD, pidfd %d): %w", c.pidfd, err)
	}
	return nil
}

// killAll SIGKILLs every child the reaper still waits for and reports whether there
// is none (the spawner's shutdown; run reaps them as usual). By pid, since the
// spawner's own seccomp filter refuses pidfd_send_signal: a child in the map has not
// been reaped (run takes it out under mu first, and nothing else waits for it), so
// its pid cannot have been reused.
func (rp *reaper) killAll() bool {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	for _, c := range rp.children {
		_ = unix.Kill(c.pid, unix.SIGKILL)
	}
	return len(rp.children) == 0
}

// run reaps until stop (or until the epoll fd fails).
func (rp *reaper) run() {
	defer unix.Close(rp.stopfd)
	defer unix.Close(rp.epfd)
	events := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(rp.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "agentexec spawner: reaper: epoll_wait: %v\n", err)
			return
		}
		for _, ev := range events[:n] {
			if ev.Fd == int32(rp.stopfd) {
				return
			}
			rp.mu.Lock()
			c, ok := rp.children[ev.Fd]
			delete(rp.children, ev.Fd)
			rp.mu.Unlock()
			if !ok {
				continue
			}
			// Out of the set before the fd number can be reused: the registration
			// belongs to the pidfd file, which outlives our fd (see add).
			_ = unix.EpollCtl(rp.epfd, unix.EPOLL_CTL_DEL, c.pidfd, nil)
			rp.reap(c)
		}
	}
}

func (rp *reaper) reap(c reaped) {
	defer unix.Close(c.pidfd)
	var ws unix.WaitStatus
	var ru unix.Rusage
	wpid, err := wait4(c.pid, &ws, unix.WNOHANG, &ru)
	if err == nil && wpid == 0 {
		// Readable pidfd but no zombie yet cannot happen for a child that exited; be
		// safe and wait for it.
		_, err = wait4(c.pid, &ws, 0, &ru)
	}
	rp.done(c, ws, &ru, err)
}

// wait4 is unix.Wait4, retried when a signal interrupts it.
func wait4(pid int, ws *unix.WaitStatus, options int, ru *unix.Rusage) (int, error) {
	for {
		wpid, err := unix.Wait4(pid, ws, options, ru)
		if !errors.Is(err, unix.EINTR) {
			return wpid, err
		}
	}
}
