package agentexec

import (
	"context"
	"fmt"

	"github.com/agentexec/agentexec/internal/audit"
	"github.com/agentexec/agentexec/policy"
)

// WithKernelDenials asks for the kernel's denials in every Result, as the policy's
// `kernel_denials: on` does (docs/denials.md); the policy's `require` still wins.
func WithKernelDenials() Option { return func(o *options) { o.kernelDenials = true } }

// setupDenials opens the audit collector when the policy (or WithKernelDenials)
// asks for kernel denials: it turns the host's audit on if it is off, and Close
// restores it. Where the host cannot, `require` is an error and `on` a reported
// gap: every Result then says "unavailable" with the reason.
func (rt *Runtime) setupDenials() error {
	mode := rt.pol.KernelDenials
	if rt.opts.kernelDenials && mode != policy.KernelDenialsRequire {
		mode = policy.KernelDenialsOn
	}
	if mode == "" || mode == policy.KernelDenialsOff {
		rt.denialsOff = "kernel_denials: off"
		return nil
	}
	reason := ""
	if abi := rt.host.LandlockABI; abi < policy.LandlockABIAuditFlags {
		reason = fmt.Sprintf("Landlock ABI %d logs no denials of exec'd tools (needs ABI %d)", abi, policy.LandlockABIAuditFlags)
	} else if c, err := audit.Open(audit.Options{Enable: true}); err != nil {
		reason = err.Error()
	} else {
		rt.audit = c
		if h := c.Host(); h.Held && h.EnabledBefore == 0 {
			rt.opts.logger.Warn("kernel denials: turned the host's audit on; Close restores it", "backlog_limit", h.BacklogLimit)
		}
		return nil
	}
	if mode == policy.KernelDenialsRequire {
		return fmt.Errorf("agentexec: kernel_denials: require: %s: %w", reason, ErrNotSupported)
	}
	rt.denialsOff = reason
	rt.opts.logger.Warn("kernel denials unavailable; results list only the policy's and the proxy's refusals", "reason", reason)
	return nil
}

// KernelDenials reports whether the runtime collects the kernel's denials and, when
// it does not, why ("kernel_denials: off", or what the host lacks).
func (rt *Runtime) KernelDenials() (on bool, why string) {
	if rt.audit != nil {
		return true, ""
	}
	return false, rt.denialsOff
}

// closeDenials closes the collector, restoring the host's audit state.
func (rt *Runtime) closeDenials() error {
	if rt.audit == nil {
		return nil
	}
	msg, err := rt.audit.Close()
	if msg != "" {
		rt.opts.logger.Info("kernel denials: " + msg)
	}
	return err
}

// collectDenials puts a finished launch's denials into r: the kernel's (waiting
// for records still in flight) and the egress proxy's, each with its hint.
func (p *Process) collectDenials(r *Result) {
	if p.audit != nil {
		ds, st := p.audit.Finish(context.Background())
		r.Denials = append(r.Denials, ds...)
		r.DenialsStatus = DenialsStatus(st)
	} else {
		r.DenialsStatus = DenialsStatus{State: audit.Unavailable, Reason: p.rt.denialsOff}
	}
	if p.egress != nil {
		rep := p.egress.Close()
		r.Egress = egressReport(rep)
		r.Denials = append(r.Denials, egressDenials(rep)...)
	}
	for i := range r.Denials {
		if r.Denials[i].Hint == nil {
			r.Denials[i].Hint = p.rt.pol.Hint(p.tool, r.Denials[i])
		}
	}
}
