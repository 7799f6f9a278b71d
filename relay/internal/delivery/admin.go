package delivery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/postwarden/postwarden/relay/internal/spool"
)

// Errors of Admin's commands.
var (
	// ErrInFlight: the message is being delivered. A command that would change it is
	// refused rather than made to wait: an attempt can take minutes, and the
	// administrator learns at once and tries again when it ends.
	ErrInFlight = errors.New("the message is being delivered; try again when the attempt ends")
	// ErrBusy: another command is changing the message.
	ErrBusy = errors.New("another command is changing the message; try again")
	// ErrHeld: retry does not attempt a held message.
	ErrHeld = errors.New("the message is held; release it first")
	// ErrDeliveryOff: retry and bounce need the queue runner, and this relay does not
	// deliver (--delivery=false).
	ErrDeliveryOff = errors.New("this relay does not deliver (--delivery=false)")
	// ErrBounceNotDone: the message is still queued after a bounce. The relay's log
	// says why; when only the DSN could not be queued, the runner queues it at the
	// message's next attempt, as after an expiry.
	ErrBounceNotDone = errors.New("the bounce could not be completed; the relay's log says why")
)

// bounceReason is what a bounced recipient's DSN says. The administrator's own reason
// goes to the relay's log only: it may say things the sender should not read.
const bounceReason = "delivery cancelled by the relay's administrator"

// Admin carries out an administrator's commands on queued messages (postwarden
// queue). Each command claims the message first, so it never changes a message
// being delivered (ErrInFlight) nor one another command is changing (ErrBusy), and
// the runner never delivers a message while a command changes it. Every change goes
// through the spool's Update and Remove, durable when the command returns.
type Admin struct {
	spool  Spool
	claims *claims
	now    func() time.Time
	runner *Runner // nil when the relay does not deliver
}

// NewAdmin returns the commands of a relay that does not deliver: hold, release and
// delete work, retry and bounce return ErrDeliveryOff. A delivering relay's Admin is
// Runner.Admin, which shares the runner's claims.
func NewAdmin(sp Spool) *Admin {
	return &Admin{spool: sp, claims: newClaims(), now: time.Now}
}

// Admin returns the commands on the runner's queue.
func (r *Runner) Admin() *Admin {
	return &Admin{spool: r.opts.Spool, claims: r.claims, now: r.clock.Now, runner: r}
}

// InFlight reports whether id is being delivered now.
func (a *Admin) InFlight(id string) bool { return a.claims.holder(id) == byDelivery }

// Retry makes id due now (Postfix's postqueue -i). A message being delivered is being
// retried already: inFlight is true, and nothing changes.
func (a *Admin) Retry(id string) (inFlight bool, err error) {
	if a.runner == nil {
		return false, ErrDeliveryOff
	}
	_, err = a.change(id, func(m *spool.Message) (bool, error) {
		if m.Held {
			return false, ErrHeld
		}
		a.runner.unpause(id)
		now := a.now()
		if !m.NextAttempt.After(now) {
			return false, nil // due already
		}
		m.NextAttempt = now
		return true, nil
	})
	if errors.Is(err, ErrInFlight) {
		return true, nil
	}
	return false, err
}

// RetryCounts says what RetryAll did with each queued message.
type RetryCounts struct {
	Retried  int `json:"retried"`  // due now
	InFlight int `json:"inFlight"` // being delivered already
	Held     int `json:"held"`     // held: left alone
	Busy     int `json:"busy"`     // another command was changing it
}

// RetryAll makes every queued message that is not held due now (postqueue -f). It
// goes on past a message it cannot change and returns the first error.
func (a *Admin) RetryAll() (RetryCounts, error) {
	var counts RetryCounts
	if a.runner == nil {
		return counts, ErrDeliveryOff
	}
	ids := make(chan string)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	// A few at once, so their state writes share the spool's group commits.
	for range 8 {
		wg.Go(func() {
			for id := range ids {
				inFlight, err := a.Retry(id)
				mu.Lock()
				switch {
				case inFlight:
					counts.InFlight++
				case err == nil:
					counts.Retried++
				case errors.Is(err, ErrHeld):
					counts.Held++
				case errors.Is(err, ErrBusy):
					counts.Busy++
				case errors.Is(err, spool.ErrNotFound): // delivered meanwhile
				case first == nil:
					first = err
				}
				mu.Unlock()
			}
		})
	}
	for _, id := range a.spool.IDs() {
		ids <- id
	}
	close(ids)
	wg.Wait()
	return counts, first
}

// Hold keeps id from being attempted until Release (postsuper -h); the hold is in the
// message's state, so it survives a restart. changed is false if it was held already.
func (a *Admin) Hold(id string) (changed bool, err error) {
	return a.change(id, func(m *spool.Message) (bool, error) {
		write := !m.Held
		m.Held = true
		return write, nil
	})
}

// Release lifts a hold (postsuper -H): the message is due again at the next attempt
// it had, at once if that has passed. changed is false if it was not held.
func (a *Admin) Release(id string) (changed bool, err error) {
	return a.change(id, func(m *spool.Message) (bool, error) {
		write := m.Held
		m.Held = false
		return write, nil
	})
}

// Delete removes id from the queue without telling its sender (postsuper -d).
func (a *Admin) Delete(id string) (err error) {
	if err := a.take(id); err != nil {
		return err
	}
	defer func() { a.end(id, err == nil, err) }()
	return a.spool.Remove(id)
}

// Bounce fails id's pending recipients and sends its sender a bounce, as an expiry
// would, through the runner's own path: the outcome is written, the DSN queued, and
// the message removed. notified is false when no DSN was due (the null sender, or no
// recipient left to fail).
func (a *Admin) Bounce(ctx context.Context, id string) (notified bool, err error) {
	r := a.runner
	if r == nil {
		return false, ErrDeliveryOff
	}
	if err := a.take(id); err != nil {
		return false, err
	}
	gone := false
	defer func() { a.end(id, gone, err) }()
	m, err := a.spool.Get(id)
	if err != nil {
		return false, err
	}
	now := a.now()
	for i := range m.Recipients {
		if rs := &m.Recipients[i]; rs.Status == spool.StatusPending {
			rs.Status, rs.UpdatedAt = spool.StatusFailed, now
			rs.LastReply = formatReply("5.0.0", "", bounceReason)
		}
	}
	// If the bounce cannot be queued now, the runner retries it at the next attempt;
	// it would skip a held message forever.
	m.Held = false
	// The command must not be cut halfway by the client hanging up.
	r.after(context.WithoutCancel(ctx), m, r.opts.View(), r.log.With("id", id))
	if _, err := a.spool.Get(id); !errors.Is(err, spool.ErrNotFound) {
		return false, ErrBounceNotDone
	}
	gone = true
	return m.Envelope.Sender != "" && hasFailed(m), nil
}

// change runs f on id's state under a command's claim and writes the state back when
// f says so.
func (a *Admin) change(id string, f func(m *spool.Message) (write bool, err error)) (_ bool, err error) {
	if err := a.take(id); err != nil {
		return false, err
	}
	defer func() { a.end(id, false, err) }()
	m, err := a.spool.Get(id)
	if err != nil {
		return false, err
	}
	write, err := f(&m)
	if err != nil || !write {
		return false, err
	}
	if err := a.spool.Update(m); err != nil {
		return false, err
	}
	return true, nil
}

func (a *Admin) take(id string) error {
	switch a.claims.take(id, byCommand) {
	case byDelivery:
		return fmt.Errorf("%s: %w", id, ErrInFlight)
	case byCommand:
		return fmt.Errorf("%s: %w", id, ErrBusy)
	}
	return nil
}

// end ends the command's claim and wakes the runner, which reads the message again. A
// message the command removed, or that was not queued, leaves no mark behind.
func (a *Admin) end(id string, removed bool, err error) {
	if removed || errors.Is(err, spool.ErrNotFound) {
		a.claims.drop(id)
	} else {
		a.claims.release(id, byCommand)
	}
	if a.runner != nil {
		a.runner.signal()
	}
}
