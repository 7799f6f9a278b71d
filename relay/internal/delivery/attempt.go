package delivery

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/postwarden/postwarden/relay/internal/compiled"
	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/internal/tracking"
)

// process makes one delivery attempt for every pending recipient of m.
func (r *Runner) process(ctx context.Context, m spool.Message) {
	log := r.log.With(tracking.KeyQueueID, m.ID)
	var pending []int
	for i, rs := range m.Recipients {
		if rs.Status == spool.StatusPending {
			pending = append(pending, i)
			if rs.Attempts < m.Attempts {
				// The attempt recorded below was never completed: the process died
				// with this recipient in flight.
				r.metrics.PossibleDuplicates.Inc()
				log.Warn("delivery: retrying a recipient whose last attempt was interrupted", "rcpt", rs.Address)
			}
		}
	}
	if len(pending) == 0 {
		r.finish(ctx, m, log) // a crash came between the last update and the removal
		return
	}

	// Mark the attempt first: a crash from here on retries after the backoff and is
	// recognised as a possible duplicate. The mark is not fsync'd (spool.Attempt): a
	// power loss may forget it, which costs that recognition, never a message.
	start := r.clock.Now()
	m.Attempts++
	m.NextAttempt = r.nextAttempt(m, start)
	body, err := r.opts.Spool.Attempt(m.ID, m.Attempts, m.NextAttempt)
	if err != nil {
		log.Error("delivery: cannot record the attempt; not delivering", "err", err)
		r.hold(m.ID, start.Add(r.retry.First))
		return
	}
	defer body.Close()
	r.signal()
	// The message as it goes out: the prefix stored at acceptance (its DKIM
	// signatures), then the body.
	content := spool.Content(m, body)

	view := r.opts.View()
	if err := view.TLSErr(); err != nil {
		log.Error("delivery: the configuration's TLS policies do not compile; retrying later", "err", err)
		r.deferPending(&m, pending, "the relay configuration is not usable")
		r.after(ctx, m, nil, log)
		return
	}
	type group struct {
		domain string
		idx    []int
		rcpts  []string
	}
	var groups []*group
	byDomain := map[string]*group{}
	for _, i := range pending {
		d := domainOf(m.Recipients[i].Address)
		g := byDomain[d]
		if g == nil {
			g = &group{domain: d}
			byDomain[d] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
		g.rcpts = append(g.rcpts, m.Recipients[i].Address)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var delivered [][2]string // recipient, direction
	for _, g := range groups {
		rt, direction := route(view, m.Envelope.Sender, m.Envelope.OnBehalfOf, g.domain, r.opts.Smarthost)
		req := Request{Route: rt, Sender: m.Envelope.Sender, Recipients: g.rcpts,
			Body: io.NewSectionReader(content, 0, content.Size()), Size: content.Size()}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := r.deliverGroup(ctx, req)
			mu.Lock()
			defer mu.Unlock()
			r.apply(&m, g.idx, res, rt, direction)
			for k, out := range res.Recipients {
				if out.Outcome == Delivered {
					delivered = append(delivered, [2]string{m.Recipients[g.idx[k]].Address, direction})
				}
			}
		}()
	}
	wg.Wait()
	r.after(ctx, m, view, log)
	if r.opts.Delivered != nil {
		for _, d := range delivered {
			r.opts.Delivered(d[0], d[1])
		}
	}
}

// deferPending records a local failure for every pending recipient, so the attempt
// is complete and is not mistaken later for one cut short by a crash.
func (r *Runner) deferPending(m *spool.Message, pending []int, reason string) {
	res := Result{}
	for _, i := range pending {
		res.Recipients = append(res.Recipients, RecipientResult{
			Address: m.Recipients[i].Address, Outcome: Deferred, Status: "4.3.0", Reason: reason})
	}
	r.apply(m, pending, res, Route{}, m.Envelope.Direction)
}

func (r *Runner) nextAttempt(m spool.Message, now time.Time) time.Time {
	next := now.Add(r.retry.Backoff(m.Attempts))
	// The last attempt happens when the lifetime ends, not a backoff after it.
	if end := m.Envelope.ReceivedAt.Add(r.retry.Lifetime); next.After(end) && end.After(now) {
		next = end
	}
	return next
}

// deliverGroup runs one transaction within the concurrency bounds.
func (r *Runner) deliverGroup(ctx context.Context, req Request) Result {
	interrupted := func() Result {
		res := Result{}
		for _, a := range req.Recipients {
			res.Recipients = append(res.Recipients, RecipientResult{
				Address: a, Outcome: Deferred, Status: "4.3.0", Reason: "delivery interrupted by shutdown"})
		}
		return res
	}
	release := r.perDest.acquire(req.Route.Domain, ctx.Done())
	if release == nil {
		return interrupted()
	}
	defer release()
	select {
	case r.sessions <- struct{}{}:
		defer func() { <-r.sessions }()
	case <-ctx.Done():
		return interrupted()
	}
	return r.opts.Client.Deliver(ctx, req)
}

// apply records a group's outcomes in m, and writes each recipient's tracking line. rt
// is the group's route; the zero Route for outcomes decided before routing.
func (r *Runner) apply(m *spool.Message, idx []int, res Result, rt Route, direction string) {
	now := r.clock.Now()
	expired := !now.Before(m.Envelope.ReceivedAt.Add(r.retry.Lifetime))
	line := tracking.Outcome{
		QueueID: m.ID, SASLUser: m.Envelope.AuthUser, Sender: m.Envelope.Sender, Direction: direction,
		Attempt: m.Attempts, Delay: now.Sub(m.Envelope.ReceivedAt),
		RemoteHost: res.RemoteMTA, RemoteIP: res.RemoteAddr,
		TLSVersion: res.TLS.VersionName(), TLSCipher: res.TLS.CipherName(), TLSVerified: res.TLS.Verified,
	}
	if rt.Policy.Mode != "" {
		line.TLSPolicy, line.TLSMode = policyLabel(rt.Policy.Source), string(rt.Policy.Mode)
	}
	for k, i := range idx {
		out := res.Recipients[k]
		rs := &m.Recipients[i]
		rs.Attempts, rs.UpdatedAt = m.Attempts, now
		host := ""
		if out.Reply != "" {
			host = res.RemoteMTA
		}
		rs.LastReply = formatReply(out.Status, host, out.Text())
		line.Event = tracking.Deferred
		switch {
		case out.Outcome == Delivered:
			rs.Status, line.Event = spool.StatusDelivered, tracking.Delivered
		case out.Outcome == Failed:
			rs.Status, line.Event = spool.StatusFailed, tracking.Bounced
		case expired:
			rs.Status, line.Event = spool.StatusFailed, tracking.Expired
			rs.LastReply = formatReply("4.4.7", host, out.Text()+" (gave up: delivery time expired)")
		}
		// The metric's result labels are the event names.
		r.metrics.Recipients.WithLabelValues(direction, string(line.Event)).Inc()
		// An expired recipient's line keeps the last attempt's reply; its event says the rest.
		line.Recipient, line.EnhancedCode = rs.Address, out.Status
		line.ReplyCode, line.Reply = out.replyParts()
		line.Log(context.Background(), r.log)
		r.event(m, &line)
	}
}

// after writes the attempt's outcome: removal when every recipient is final, else the
// new state, with a delay notice when one is due.
func (r *Runner) after(ctx context.Context, m spool.Message, view *compiled.View, log *slog.Logger) {
	pending := 0
	for _, rs := range m.Recipients {
		if rs.Status == spool.StatusPending {
			pending++
		}
	}
	if pending == 0 {
		if hasFailed(m) && m.Envelope.Sender != "" {
			// The DSN goes out only after the outcome is durable, so a crash can
			// duplicate a DSN but never redeliver the message.
			if err := r.opts.Spool.Update(m); err != nil {
				log.Error("delivery: cannot record the outcome", "err", err)
				return
			}
		}
		r.finish(ctx, m, log)
		return
	}
	now := r.clock.Now()
	if r.retry.DelayNotice > 0 && !m.DelayNotified && m.Envelope.Sender != "" &&
		!now.Before(m.Envelope.ReceivedAt.Add(r.retry.DelayNotice)) {
		if err := r.notify(ctx, m, view, true); err != nil {
			log.Error("delivery: cannot queue the delay notice", "err", err)
		} else {
			m.DelayNotified = true
		}
	}
	if err := r.opts.Spool.Update(m); err != nil {
		log.Error("delivery: cannot record the outcome", "err", err)
	}
}

// finish bounces the failed recipients of a message whose recipients are all final,
// then removes it.
func (r *Runner) finish(ctx context.Context, m spool.Message, log *slog.Logger) {
	if hasFailed(m) {
		if m.Envelope.Sender == "" {
			log.Info("delivery: not bouncing a message from the null sender")
		} else {
			view := r.opts.View()
			err := view.TLSErr()
			if err == nil {
				err = r.notify(ctx, m, view, false)
			}
			if err != nil {
				// Keep the message: the bounce is retried with the next attempt.
				log.Error("delivery: cannot queue the bounce", "err", err)
				m.NextAttempt = r.clock.Now().Add(r.retry.First)
				_ = r.opts.Spool.Update(m)
				return
			}
		}
	}
	if err := r.opts.Spool.Remove(m.ID); err != nil {
		log.Error("delivery: cannot remove a finished message", "err", err)
	}
}

func hasFailed(m spool.Message) bool {
	for _, rs := range m.Recipients {
		if rs.Status == spool.StatusFailed {
			return true
		}
	}
	return false
}
