package delivery

import "sync"

// claimant is who holds a claim on a queued message.
type claimant int

const (
	unclaimed  claimant = iota
	byDelivery          // the runner is delivering it
	byCommand           // an administrator's command is changing it
)

// claims says who may write a queued message's state right now: the runner while it
// delivers the message, or one administrator's command while it changes it. Neither
// writes a message the other holds, so a command never races a delivery attempt: the
// runner skips a message a command holds, and a command refuses a message in delivery
// (Admin), instead of one overwriting the other's state or removing a message under
// the other's feet.
type claims struct {
	mu    sync.Mutex
	owner map[string]claimant
	// changed are messages a command has changed since the runner last read them: a
	// state the runner kept from an earlier pass is stale and must be read again
	// before it is delivered.
	changed map[string]bool
}

func newClaims() *claims {
	return &claims{owner: map[string]claimant{}, changed: map[string]bool{}}
}

// take claims id for who and returns unclaimed, or returns who holds it already. The
// runner is also refused a message changed since it last called reread, so it never
// delivers from a stale state.
func (c *claims) take(id string, who claimant) claimant {
	c.mu.Lock()
	defer c.mu.Unlock()
	if held := c.owner[id]; held != unclaimed {
		return held
	}
	if who == byDelivery && c.changed[id] {
		return byCommand
	}
	c.owner[id] = who
	return unclaimed
}

// release ends who's claim on id. A command's release marks the message changed,
// whether or not it wrote anything: cheaper than telling, and always safe.
func (c *claims) release(id string, who claimant) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owner[id] != who {
		return
	}
	delete(c.owner, id)
	if who == byCommand {
		c.changed[id] = true
	}
}

// reread reports, once, whether a command changed id since the last call: the
// runner then reads the message again instead of trusting a state it kept.
func (c *claims) reread(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.changed[id] {
		return false
	}
	delete(c.changed, id)
	return true
}

// holder returns who holds id.
func (c *claims) holder(id string) claimant {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.owner[id]
}

// drop ends a command's claim on a message it removed from the queue. No mark is left:
// the id is never due again, so the runner never asks, and a mark would stay forever.
func (c *claims) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.owner, id)
	delete(c.changed, id)
}
