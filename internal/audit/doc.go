// Package audit turns the kernel's audit records into the denials of agentexec's
// launches: Landlock's (AUDIT_LANDLOCK_ACCESS 1423, AUDIT_LANDLOCK_DOMAIN 1424)
// and seccomp's (AUDIT_SECCOMP 1326), read from the audit netlink's read-only
// multicast group (AUDIT_NLGRP_READLOG: needs CAP_AUDIT_READ, works beside a
// running auditd and takes nothing from it).
//
//	c, err := audit.Open(audit.Options{Enable: true}) // *UnavailableError says why not
//	defer c.Close()                                   // restores the host's audit state
//	l := c.Begin()                                    // before the launch is sent
//	l.Attach(pid)                                     // when the spawner reports the pid
//	l.Ended()                                         // optional: the tree is gone, log the sync marker now
//	ds, st := l.Finish(ctx)                           // after the launch's tree is gone
//
// It owns: the audit sockets, the host's audit switch while a runtime needs it on
// (enabled only when asked, the previous state restored at Close or, after a crash,
// by the next Open; a state file under /run/agentexec holds what to restore), record
// parsing, the attribution of records to launches (by Landlock domain id, by pid),
// the per-launch cap on distinct denials and the detection of lost records.
//
// It does not compute hints (policy.Policy.Hint does, from the policy alone) and
// must not import the root package, internal/spawner, internal/templates,
// internal/cgroup or internal/contain: the engine calls it, never the reverse. Raw
// netlink structures live in internal/sys (audit_linux.go). docs/denials.md says
// what is covered and what is not.
package audit
