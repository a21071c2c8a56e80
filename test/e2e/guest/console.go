package guest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Console is a guest's serial console carrying the control protocol of
// init.sh. The host writes one line, "ID SECONDS COMMAND"; the guest
// answers "@@nagare-start ID@@", the command's output (stdout and stderr),
// then "@@nagare-done ID STATUS@@" on a line of its own, and kills the
// command if it runs longer than SECONDS. Commands run one at a time.
//
// QEMU's standard output is written into the Console (it is an
// io.Writer), and its standard input is in: the serial port is QEMU's
// stdio, so the console needs no socket and ends when QEMU does.
type Console struct {
	in io.Writer

	mu      sync.Mutex
	text    []byte        // everything the guest printed, without \r
	closed  error         // why the console ended; nil while it runs
	changed chan struct{} // closed and replaced on every change

	cmdMu sync.Mutex // one command at a time
	seq   int
}

// NewConsole returns a console that sends to the guest through in.
func NewConsole(in io.Writer) *Console {
	return &Console{in: in, changed: make(chan struct{})}
}

// Write takes what the guest printed.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range p {
		if b != '\r' {
			c.text = append(c.text, b)
		}
	}
	c.notify()
	return len(p), nil
}

// Close ends the console: the guest is gone, for reason err.
func (c *Console) Close(err error) {
	if err == nil {
		err = errors.New("the guest exited")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed == nil {
		c.closed = err
		c.notify()
	}
}

func (c *Console) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// String is everything the guest printed so far.
func (c *Console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.text)
}

// Tail is the last n lines the guest printed.
func (c *Console) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(c.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

const (
	readyMarker = "@@nagare-ready@@\n"
	errorMarker = "@@nagare-error "
)

// WaitReady waits until init has set the guest up and listens for
// commands. It fails if init reported a problem (a module that did not
// load, no eth0) or the guest died first.
func (c *Console) WaitReady(ctx context.Context) error {
	_, err := await(c, ctx, 0, func(text []byte) (struct{}, bool) {
		return struct{}{}, bytes.Contains(text, []byte(readyMarker))
	})
	if err != nil {
		return fmt.Errorf("guest did not come up: %w", err)
	}
	text := c.String()
	if i := strings.Index(text, errorMarker); i >= 0 {
		line, _, _ := strings.Cut(text[i+len(errorMarker):], "@@")
		return fmt.Errorf("guest init: %s", line)
	}
	return nil
}

// ExitError is a command that ran and failed.
type ExitError struct {
	Cmd    string
	Status int // 137 when the guest killed it for running too long
	Output string
}

func (e *ExitError) Error() string {
	why := fmt.Sprintf("exit status %d", e.Status)
	if e.Status == 137 {
		why += " (killed: took longer than its timeout)"
	}
	return fmt.Sprintf("guest: %s: %s: %s", e.Cmd, why, strings.TrimSpace(e.Output))
}

// Run runs a shell command (one line) in the guest and returns its
// output. The guest kills it after timeout; Run itself gives up when ctx
// ends or the guest is not back a while after timeout. A command that
// exits non-zero returns its output and an *ExitError.
func (c *Console) Run(ctx context.Context, timeout time.Duration, cmd string) (string, error) {
	if cmd == "" || len(cmd) > 3000 || strings.ContainsFunc(cmd, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		// The guest reads a line in canonical mode: control characters
		// edit it, and a line is at most 4095 bytes.
		return "", fmt.Errorf("guest command must be one line of at most 3000 printable characters: %q", cmd)
	}
	secs := int((timeout + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	c.cmdMu.Lock()
	defer c.cmdMu.Unlock()
	c.seq++
	id := strconv.Itoa(c.seq)
	c.mu.Lock()
	from, closed := len(c.text), c.closed
	c.mu.Unlock()
	if closed != nil {
		return "", fmt.Errorf("guest: %s: console closed: %w", cmd, closed)
	}
	if _, err := fmt.Fprintf(c.in, "%s %d %s\n", id, secs, cmd); err != nil {
		return "", fmt.Errorf("guest: send %q: %w", cmd, err)
	}
	// The guest's clock may run slow under TCG, and the answer has to
	// come back through the serial port.
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+20*time.Second)
	defer cancel()
	start, done := "@@nagare-start "+id+"@@\n", "\n@@nagare-done "+id+" "
	type result struct {
		out    string
		status int
	}
	r, err := await(c, ctx, from, func(text []byte) (result, bool) {
		i := bytes.Index(text, []byte(start))
		if i < 0 {
			return result{}, false
		}
		out := text[i+len(start):]
		j := bytes.Index(out, []byte(done))
		if j < 0 {
			return result{}, false
		}
		statusText, _, ok := bytes.Cut(out[j+len(done):], []byte("@@"))
		if !ok {
			return result{}, false
		}
		status, err := strconv.Atoi(string(statusText))
		if err != nil {
			status = -1
		}
		return result{string(out[:j]), status}, true
	})
	if err != nil {
		return "", fmt.Errorf("guest: %s: %w", cmd, err)
	}
	if r.status != 0 {
		return r.out, &ExitError{Cmd: cmd, Status: r.status, Output: r.out}
	}
	return r.out, nil
}

// await waits until match finds its answer in what the guest printed from
// offset from on.
func await[T any](c *Console, ctx context.Context, from int, match func([]byte) (T, bool)) (T, error) {
	for {
		c.mu.Lock()
		r, ok := match(c.text[from:])
		changed, closed := c.changed, c.closed
		c.mu.Unlock()
		if ok {
			return r, nil
		}
		if closed != nil {
			return r, fmt.Errorf("console closed: %w", closed)
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-changed:
		}
	}
}
