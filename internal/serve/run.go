package serve

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/policy"
)

// Run starts a runtime for p with opts, serves the protocol on in and out until the
// input ends or ctx is done (see Serve), and closes the runtime: `agentexec serve`.
func Run(ctx context.Context, p *policy.Policy, in io.Reader, out io.Writer, cfg Config, opts ...agentexec.Option) error {
	rt, err := agentexec.New(ctx, p, opts...)
	if err != nil {
		return fmt.Errorf("serve: start runtime: %w", err)
	}
	err = Serve(ctx, rt, in, out, cfg)
	if cerr := rt.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("serve: close runtime: %w", cerr))
	}
	return err
}
