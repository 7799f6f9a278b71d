package spool

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The crash tests re-run this test binary as a child process that uses a spool and is
// then killed with SIGKILL; the parent reopens the spool and checks what survived.
const (
	childModeEnv = "SPOOL_TEST_CHILD_MODE"
	childDirEnv  = "SPOOL_TEST_CHILD_DIR"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(childModeEnv); mode != "" {
		runChild(mode, os.Getenv(childDirEnv))
		os.Exit(3) // a child is always killed before this
	}
	os.Exit(m.Run())
}

// runChild is the child process. It reports on stdout:
//
//	ACK <id> <seq>  after Accept returned id for message seq
//	STREAMING       while blocked in the middle of a body
func runChild(mode, dir string) {
	opts := Options{}
	point, crashMode := strings.CutPrefix(mode, "crash-at:")
	updatePoint, updateMode := strings.CutPrefix(mode, "update-crash-at:")
	reusePoint, reuseMode := strings.CutPrefix(mode, "reuse-crash-at:")
	var armed atomic.Bool // for updates and reuse: crash only once the first accept is done
	switch {
	case updateMode:
		point, crashMode = updatePoint, true
	case reuseMode:
		point, crashMode = reusePoint, true
	default:
		armed.Store(true)
	}
	if crashMode {
		opts.crashAt = func(p string) {
			if p == point && armed.Load() {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
	}
	s, err := Open(dir, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	var out sync.Mutex
	ack := func(id string, seq int) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf("ACK %s %d\n", id, seq)
	}
	acceptSeq := func(seq int) string {
		id, err := s.Accept(context.Background(), testEnvelope(), bytes.NewReader(testBody(seq)))
		if err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(2)
		}
		ack(id, seq)
		return id
	}

	switch {
	case mode == "sealed-loop":
		// As accept-loop, with a prefix sealed after each body.
		for w := range 4 {
			go func() {
				for i := 0; ; i++ {
					seq := w*1_000_000 + i
					id := s.NewID()
					err := s.AcceptSealed(context.Background(), id, testEnvelope(), bytes.NewReader(testBody(seq)),
						func(env *Envelope) error { env.Prepend = sealFor(seq); return nil }, nil)
					if err != nil {
						fmt.Fprintln(os.Stderr, "child:", err)
						os.Exit(2)
					}
					ack(id, seq)
				}
			}()
		}
		select {}
	case mode == "accept-loop":
		// Several writers, so the kill also lands inside group commits.
		for w := range 4 {
			go func() {
				for i := 0; ; i++ {
					acceptSeq(w*1_000_000 + i)
				}
			}()
		}
		select {}
	case mode == "stream":
		r := io.MultiReader(bytes.NewReader(testBody(7)), stallingReader{})
		_, _ = s.Accept(context.Background(), testEnvelope(), r)
	case updateMode:
		id := acceptSeq(1)
		m, err := s.Get(id)
		if err != nil {
			os.Exit(2)
		}
		m.Attempts = 1
		armed.Store(true)
		_ = s.Update(m)
	case reuseMode:
		// The second accept writes into the file of the first, removed message.
		id := acceptSeq(1)
		if err := s.Remove(id); err != nil {
			os.Exit(2)
		}
		armed.Store(true)
		acceptSeq(2)
	case mode == "attempt":
		// The runner's mark before it delivers, then a kill in the middle of the
		// delivery: the mark is not fsync'd, but the kernel keeps it.
		id := acceptSeq(1)
		if _, err := s.Attempt(id, 1, time.Now().Add(time.Hour)); err != nil {
			os.Exit(2)
		}
		fmt.Println("MARKED")
	case point == "between-unlinks":
		// Only a message with a later state has two files to unlink.
		id := acceptSeq(1)
		m, err := s.Get(id)
		if err != nil {
			os.Exit(2)
		}
		m.Attempts = 1
		if err := s.Update(m); err != nil {
			os.Exit(2)
		}
		_ = s.Remove(id)
	case crashMode:
		acceptSeq(1)
	}
	select {}
}

// stallingReader announces that the body is half read, then blocks like a slow client.
type stallingReader struct{}

func (stallingReader) Read([]byte) (int, error) {
	fmt.Println("STREAMING")
	select {}
}

type child struct {
	cmd   *exec.Cmd
	lines *bufio.Scanner
}

func startChild(t *testing.T, dir, mode string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childModeEnv+"="+mode, childDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return &child{cmd: cmd, lines: bufio.NewScanner(stdout)}
}

// next returns the child's next line, or "" once it has died.
func (c *child) next() string {
	if c.lines.Scan() {
		return c.lines.Text()
	}
	return ""
}

func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	_ = c.cmd.Wait()
}

// checkComplete asserts that every queued message is whole: state and body agree.
func checkComplete(t *testing.T, s *Spool) []Message {
	t.Helper()
	msgs := s.Due(time.Now().Add(time.Hour), s.Len()+1)
	if len(msgs) != s.Len() {
		t.Fatalf("Due listed %d messages, Len says %d", len(msgs), s.Len())
	}
	for _, m := range msgs {
		body := readBody(t, s, m.ID)
		if err := checkBody(body); err != nil || m.Size != int64(len(body)) {
			t.Fatalf("message %s after crash is not whole: size %d, body %d bytes: %v", m.ID, m.Size, len(body), err)
		}
		if m.Envelope.Sender != testEnvelope().Sender || len(m.Recipients) != 1 {
			t.Fatalf("message %s after crash has envelope %+v", m.ID, m.Envelope)
		}
	}
	return msgs
}

func TestCrashAfterAcknowledgement(t *testing.T) {
	for round, acks := range []int{1, 3, 12, 40} {
		t.Run(fmt.Sprintf("killed after %d acknowledgements", acks), func(t *testing.T) {
			dir := t.TempDir()
			c := startChild(t, dir, "accept-loop")
			acked := make(map[string]int)
			for len(acked) < acks {
				line := c.next()
				var id string
				var seq int
				if _, err := fmt.Sscanf(line, "ACK %s %d", &id, &seq); err != nil {
					t.Fatalf("child said %q: %v", line, err)
				}
				acked[id] = seq
			}
			c.kill(t) // typically with more Accepts in every stage of flight

			s := openSpool(t, dir, Options{})
			for id, seq := range acked {
				if _, err := s.Get(id); err != nil {
					t.Fatalf("round %d: acknowledged message %s (seq %d) lost: %v", round, id, seq, err)
				}
				if body := readBody(t, s, id); !bytes.Equal(body, testBody(seq)) {
					t.Fatalf("acknowledged message %s has the wrong body", id)
				}
			}
			checkComplete(t, s)
			if files := tmpFiles(t, dir); len(files) != 0 {
				t.Fatalf("tmp after recovery holds %v", files)
			}
		})
	}
}

func TestCrashAtEachStage(t *testing.T) {
	tests := map[string]struct {
		mode     string
		wait     string // the line to kill on; "" waits for the child's own kill
		left     int    // files in tmp/ and queue/ at the crash, garbage or not
		want     int    // messages found after recovery
		attempts int    // their Attempts
		marked   bool   // the attempt is only marked: no later state, recipients in flight
	}{
		"a kill mid-stream leaves nothing":                {mode: "stream", wait: "STREAMING", left: 1},
		"a crash after streaming the body leaves nothing": {mode: "crash-at:body-written", left: 1},
		"a crash after the file fsync leaves nothing":     {mode: "crash-at:file-synced", left: 1},
		"a crash before the directory fsync keeps it":     {mode: "crash-at:before-dir-sync", left: 1, want: 1},
		"a crash inside Remove does not resurrect it":     {mode: "crash-at:between-unlinks", left: 1},
		"a crash before an update's rename keeps the old state": {
			mode: "update-crash-at:update-synced", left: 2, want: 1, attempts: 0,
		},
		"a crash writing into a reused file leaves nothing": {
			mode: "reuse-crash-at:body-written", left: 0,
		},
		"a crash before a reused file's directory fsync keeps it": {
			mode: "reuse-crash-at:before-dir-sync", left: 1, want: 1,
		},
		"a kill during an attempt keeps its mark": {
			mode: "attempt", wait: "MARKED", left: 1, want: 1, attempts: 1, marked: true,
		},
		"a crash after an update's rename keeps the new state": {
			mode: "update-crash-at:before-dir-sync", left: 2, want: 1, attempts: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			c := startChild(t, dir, tc.mode)
			for {
				line := c.next()
				if tc.wait != "" && line == tc.wait {
					c.kill(t)
					break
				}
				if line == "" { // the child killed itself
					_ = c.cmd.Wait()
					break
				}
				if !strings.HasPrefix(line, "ACK ") || !acksFirst(tc.mode) {
					t.Fatalf("child said %q before its crash", line)
				}
			}
			if st, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || st.Signal() != syscall.SIGKILL {
				t.Fatalf("child ended with %v, want SIGKILL", c.cmd.ProcessState)
			}
			if left := append(tmpFiles(t, dir), queueFiles(t, dir)...); len(left) != tc.left {
				t.Fatalf("the crash left %v, want %d files", left, tc.left)
			}

			s := openSpool(t, dir, Options{})
			msgs := checkComplete(t, s)
			if len(msgs) != tc.want {
				t.Fatalf("%d messages after recovery, want %d", len(msgs), tc.want)
			}
			for _, m := range msgs {
				if m.Attempts != tc.attempts {
					t.Fatalf("message %s has state with %d attempts, want %d", m.ID, m.Attempts, tc.attempts)
				}
				if tc.marked && (m.Recipients[0].Attempts != 0 || time.Until(m.NextAttempt) < 50*time.Minute) {
					t.Fatalf("marked message %s reads as %+v, want its recipient in flight and the next attempt in an hour", m.ID, m)
				}
			}
			if sum := s.Summary(); tc.marked && sum.Deferred != 1 {
				t.Fatalf("after the restart the marked message counts as %+v, want deferred (nothing is in flight)", sum)
			}
			if files := tmpFiles(t, dir); len(files) != 0 {
				t.Fatalf("tmp after recovery holds %v", files)
			}
			if files := queueFiles(t, dir); len(files) != tc.want+min(tc.attempts, 1)-boolInt(tc.marked) {
				t.Fatalf("queue after recovery holds %v, want %d message files and %d later states", files, tc.want, tc.attempts)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// acksFirst reports whether a child mode acknowledges one message before its crash.
func acksFirst(mode string) bool {
	return mode == "crash-at:between-unlinks" || mode == "attempt" || strings.HasPrefix(mode, "update-crash-at:") ||
		strings.HasPrefix(mode, "reuse-crash-at:")
}
