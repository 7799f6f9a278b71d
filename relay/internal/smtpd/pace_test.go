package smtpd

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// recordingPacer is a Pacer that waits for nobody and records who asked.
type recordingPacer struct {
	mu      sync.Mutex
	domains []string
	wait    time.Duration
}

func (p *recordingPacer) Pace(domain string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.domains = append(p.domains, domain)
	return p.wait
}

func (p *recordingPacer) asked() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.domains)
}

// The server asks the pacer about each accepted recipient's domain until one wait
// happened, then not again in that transaction; a refused recipient is not asked
// about, and the next transaction starts afresh.
func TestRecipientsArePacedOncePerTransaction(t *testing.T) {
	p := &recordingPacer{}
	e := newEnv(t, Inbound, func(o *Options) { o.Pacer = p })
	c := e.dial()
	c.ehlo()
	c.expect("MAIL FROM:<x@foreign.example>", "250 ")
	c.expect("RCPT TO:<alice@example.com>", "250 ")
	c.expect("RCPT TO:<nobody@example.com>", "550 ")
	if got, want := p.asked(), []string{"example.com"}; !slices.Equal(got, want) {
		t.Fatalf("pacer asked about %v, want %v", got, want)
	}

	p.wait = time.Millisecond // from now on the pacer reports a wait
	c.expect("RCPT TO:<billing@example.com>", "250 ")
	c.expect("RCPT TO:<al@example.com>", "250 ")
	if got := p.asked(); len(got) != 2 {
		t.Fatalf("pacer asked %d times, want once more before its wait and never after: %v", len(got), got)
	}
	c.expect("RSET", "250 ")
	c.expect("MAIL FROM:<x@foreign.example>", "250 ")
	c.expect("RCPT TO:<alice@example.com>", "250 ")
	if got := p.asked(); len(got) != 3 {
		t.Fatalf("pacer asked %d times, want a new transaction to ask again: %v", len(got), got)
	}
}
