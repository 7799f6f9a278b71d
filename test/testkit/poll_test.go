package testkit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	calls := 0
	err := Poll(t.Context(), time.Millisecond, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Poll: %v after %d calls", err, calls)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err = Poll(ctx, time.Millisecond, func() error { return errors.New("never") })
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "never") {
		t.Fatalf("Poll of an ended context: %v", err)
	}
}

// fatalTB records a failure instead of ending the test.
type fatalTB struct {
	testing.TB
	failed string
}

func (f *fatalTB) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, 10*time.Second, "the third call", Until(func() bool { n++; return n == 3 }))
	if n != 3 {
		t.Fatalf("%d calls", n)
	}
	f := &fatalTB{TB: t}
	Eventually(f, 20*time.Millisecond, "the impossible", func() error { return errors.New("last reason") })
	if !strings.Contains(f.failed, "the impossible") || !strings.Contains(f.failed, "last reason") {
		t.Fatalf("failure %q", f.failed)
	}
}
