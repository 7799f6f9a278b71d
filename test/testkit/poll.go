package testkit

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Poll calls check until it returns nil, or until ctx ends, waiting interval between
// calls. When ctx ends first, it returns ctx's error together with check's last one.
func Poll(ctx context.Context, interval time.Duration, check func() error) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// pollFirst and pollMax bound the interval of Eventually: it looks again quickly at
// first, so that a condition that soon holds is seen soon, and backs off towards pollMax
// so that a slow one does not load a shared machine.
const (
	pollFirst = 2 * time.Millisecond
	pollMax   = 50 * time.Millisecond
)

// Eventually calls check until it returns nil, and fails t with check's last error when
// that has not happened within timeout. what says what is awaited, for the failure.
func Eventually(t TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	interval := pollFirst
	for {
		err := check()
		if err == nil {
			return
		}
		if !time.Now().Before(deadline) {
			t.Fatalf("%s: still not so after %v: %v", what, timeout, err)
			return
		}
		time.Sleep(min(interval, time.Until(deadline)))
		interval = min(interval*2, pollMax)
	}
}

// errNotYet is the error Until gives a condition that does not hold.
var errNotYet = errors.New("not yet")

// Until adapts a condition to Eventually's check.
func Until(cond func() bool) func() error {
	return func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}
}
