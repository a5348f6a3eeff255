package agentexec_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"

	"github.com/agentexec/agentexec"
	"github.com/agentexec/agentexec/configs"
	"github.com/agentexec/agentexec/policy"
)

// A program that embeds agentexec serves as its own spawner: ServeSpawner must be
// the first thing main does.
func Example() {
	agentexec.ServeSpawner()

	p, err := policy.LoadBytes(configs.DefaultName, configs.Default, policy.HostOptions())
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	rt, err := agentexec.New(ctx, p)
	if err != nil {
		log.Fatal(err) // e.g. Landlock missing while the policy requires it
	}
	defer rt.Close()

	res, err := rt.Run(ctx, agentexec.Request{Tool: "git", Args: []string{"log", "--oneline", "-3"}})
	var denied *agentexec.DeniedError
	switch {
	case errors.As(err, &denied):
		fmt.Println("refused by", denied.Rule)
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Printf("exit %d, %d bytes, %v\n", res.ExitCode, len(res.Stdout), res.Wall)
	}
}

// Start streams a tool's output as it is produced.
func ExampleRuntime_Start() {
	p, _ := policy.LoadBytes(configs.DefaultName, configs.Default, policy.HostOptions())
	rt, err := agentexec.New(context.Background(), p)
	if err != nil {
		log.Fatal(err)
	}
	defer rt.Close()
	proc, err := rt.Start(context.Background(), agentexec.Request{Tool: "grep", Args: []string{"-rn", "TODO", "."}})
	if err != nil {
		log.Fatal(err)
	}
	go io.Copy(io.Discard, proc.Stderr())
	io.Copy(os.Stdout, proc.Stdout()) // both streams must be read to EOF
	res, err := proc.Wait()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("exit", res.ExitCode, "timed out", res.TimedOut)
}
