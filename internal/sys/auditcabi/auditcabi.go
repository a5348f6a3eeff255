//go:build cgo && linux

// Package auditcabi exposes the size and field offsets of the kernel's struct
// audit_status, from the installed UAPI header <linux/audit.h>, as Go constants.
// internal/sys compares its hand-written AuditStatus against these in an ordinary
// test (Go rejects cgo in _test.go files). It is never imported by non-test code.
package auditcabi

/*
#include <stddef.h>
#include <linux/audit.h>

enum {
	size_audit_status = sizeof(struct audit_status),
	off_mask = offsetof(struct audit_status, mask),
	off_enabled = offsetof(struct audit_status, enabled),
	off_failure = offsetof(struct audit_status, failure),
	off_pid = offsetof(struct audit_status, pid),
	off_rate_limit = offsetof(struct audit_status, rate_limit),
	off_backlog_limit = offsetof(struct audit_status, backlog_limit),
	off_lost = offsetof(struct audit_status, lost),
	off_backlog = offsetof(struct audit_status, backlog),
	off_feature_bitmap = offsetof(struct audit_status, feature_bitmap),
	off_backlog_wait_time = offsetof(struct audit_status, backlog_wait_time),
	off_backlog_wait_time_actual = offsetof(struct audit_status, backlog_wait_time_actual),
	c_audit_get = AUDIT_GET,
	c_audit_set = AUDIT_SET,
	c_audit_user = AUDIT_USER,
	c_audit_syscall = AUDIT_SYSCALL,
	c_audit_eoe = AUDIT_EOE,
	c_audit_seccomp = AUDIT_SECCOMP,
	c_audit_nlgrp_readlog = AUDIT_NLGRP_READLOG,
};
*/
import "C"

// Sizes, offsets and constants of <linux/audit.h>.
const (
	SizeofAuditStatus        = C.size_audit_status
	OffMask                  = C.off_mask
	OffEnabled               = C.off_enabled
	OffFailure               = C.off_failure
	OffPID                   = C.off_pid
	OffRateLimit             = C.off_rate_limit
	OffBacklogLimit          = C.off_backlog_limit
	OffLost                  = C.off_lost
	OffBacklog               = C.off_backlog
	OffFeatureBitmap         = C.off_feature_bitmap
	OffBacklogWaitTime       = C.off_backlog_wait_time
	OffBacklogWaitTimeActual = C.off_backlog_wait_time_actual
	AuditGet                 = C.c_audit_get
	AuditSet                 = C.c_audit_set
	AuditUser                = C.c_audit_user
	AuditSyscall             = C.c_audit_syscall
	AuditEOE                 = C.c_audit_eoe
	AuditSeccomp             = C.c_audit_seccomp
	AuditNlgrpReadlog        = C.c_audit_nlgrp_readlog
)
