// Command client drives `agentexec serve` through pipes, as a program in any language
// would: it starts the server, sends requests concurrently, streams one, cancels one,
// and matches the results by id.
//
//	go run ./examples/go/client [-agentexec PATH] [-policy FILE]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"strconv"
	"sync"
)

// Line is any line the server writes; fields absent from a line type stay zero.
type Line struct {
	Type     string  `json:"type"`
	ID       string  `json:"id"`
	Status   string  `json:"status"`
	ExitCode *int    `json:"exit_code"`
	Signal   string  `json:"signal"`
	Stdout   string  `json:"stdout"`
	Stderr   string  `json:"stderr"`
	Data     string  `json:"data"`
	Error    string  `json:"error"`
	Code     string  `json:"code"`
	Line     int64   `json:"line"`
	Duration float64 `json:"duration_ms"`
	Canceled bool    `json:"canceled"`
}

// Client is a connection to one `agentexec serve` process.
type Client struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	mu   sync.Mutex
	next int
	wait map[string]chan Line // results by id
	// OnChunk receives streamed output and lines not tied to a request.
	OnChunk func(Line)
}

// Start runs `bin serve args...`.
func Start(bin string, args ...string) (*Client, error) {
	cmd := exec.Command(bin, append([]string{"serve"}, args...)...)
	cmd.Stderr = os.Stderr // the server's logs
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &Client{cmd: cmd, in: in, wait: map[string]chan Line{}, OnChunk: func(Line) {}}
	go c.read(out)
	return c, nil
}

func (c *Client) read(out io.Reader) {
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 256<<20) // a result holds up to the policy's output cap, twice
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			log.Fatalf("protocol: %v: %q", err, sc.Text())
		}
		c.mu.Lock()
		ch := c.wait[l.ID]
		if l.Type == "result" || (l.Type == "error" && ch != nil && l.Code != "duplicate_id" && l.Code != "unknown_id") {
			delete(c.wait, l.ID)
		} else {
			ch = nil
		}
		c.mu.Unlock()
		if ch != nil {
			ch <- l
		} else {
			c.OnChunk(l)
		}
	}
}

// Submit sends a request and returns its id and a channel for its result.
func (c *Client) Submit(req map[string]any) (string, <-chan Line, error) {
	c.mu.Lock()
	c.next++
	id := strconv.Itoa(c.next)
	ch := make(chan Line, 1)
	c.wait[id] = ch
	req["id"] = id
	b, _ := json.Marshal(req)
	_, err := c.in.Write(append(b, '\n')) // under mu: lines are written whole
	c.mu.Unlock()
	return id, ch, err
}

// Send writes a control message (cancel, ping, stats, policy).
func (c *Client) Send(msg map[string]any) error {
	b, _ := json.Marshal(msg)
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.in.Write(append(b, '\n'))
	return err
}

// Close ends the input; the server finishes what is in flight and exits.
func (c *Client) Close() error {
	c.in.Close()
	return c.cmd.Wait()
}

func main() {
	bin := flag.String("agentexec", "agentexec", "the agentexec binary")
	pol := flag.String("policy", "", "policy file (default: the embedded default policy)")
	flag.Parse()
	var args []string
	if *pol != "" {
		args = append(args, "--policy", *pol)
	}
	c, err := Start(*bin, args...)
	if err != nil {
		log.Fatal(err)
	}
	c.OnChunk = func(l Line) {
		if l.Type == "stdout" {
			fmt.Printf("  [stream %s] %q\n", l.ID, l.Data)
		} else {
			fmt.Printf("  [%s] %+v\n", l.Type, l)
		}
	}
	type pending struct {
		what string
		ch   <-chan Line
	}
	var all []pending
	submit := func(what string, req map[string]any) string {
		id, ch, err := c.Submit(req)
		if err != nil {
			log.Fatal(err)
		}
		all = append(all, pending{what, ch})
		return id
	}
	submit("ls", map[string]any{"tool": "ls", "args": []string{"-1"}})
	submit("cat stdin", map[string]any{"tool": "cat", "stdin": "from the client\n"})
	submit("stream", map[string]any{"tool": "ls", "args": []string{"-la"}, "stream": true})
	submit("denied", map[string]any{"tool": "rm", "args": []string{"-rf", "/"}})
	slow := submit("canceled", map[string]any{"tool": "tail", "args": []string{"-f", "/dev/null"}}) // runs until canceled
	if err := c.Send(map[string]any{"type": "cancel", "id": slow}); err != nil {
		log.Fatal(err)
	}
	for _, p := range all {
		r := <-p.ch
		code := "-"
		if r.ExitCode != nil {
			code = strconv.Itoa(*r.ExitCode)
		}
		fmt.Printf("%-10s id=%s status=%s exit=%s signal=%s canceled=%v %.2fms stdout=%.40q %s\n",
			p.what, r.ID, r.Status, code, r.Signal, r.Canceled, r.Duration, r.Stdout, r.Error)
	}
	if err := c.Close(); err != nil {
		log.Fatal(err)
	}
}
