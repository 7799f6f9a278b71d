package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// work sends endpoint key's events one at a time, in order, until none is left or ctx
// ends. A failure waits with backoff and tries the same event again, so the events
// behind it keep their order.
func (s *Sender) work(ctx context.Context, key string) {
	failures := 0
	for ctx.Err() == nil {
		r, seq, ok, err := s.store.head(key)
		if !ok {
			if s.idle(key) {
				return
			}
			continue
		}
		if err != nil {
			s.opts.Logger.Error("delivery events: dropping an event that cannot be read", "error", err)
			s.done(key, seq, "", DropError)
			continue
		}
		signKey, reason := s.check(r)
		if reason != "" {
			s.opts.Logger.Warn("delivery events: dropping an event", "domain", r.Domain, "type", r.Type, "reason", reason)
			s.done(key, seq, r.Type, reason)
			failures = 0
			continue
		}
		status, err := s.post(ctx, r, signKey)
		switch {
		case err == nil && status/100 == 2:
			s.opts.Metrics.Sent.WithLabelValues(r.Type).Inc()
			s.done(key, seq, "", "")
			failures = 0
			continue
		case err == nil && status/100 == 4 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
			s.opts.Logger.Warn("delivery events: the endpoint refused an event", "domain", r.Domain, "status", status)
			s.done(key, seq, r.Type, DropRejected)
			failures = 0
			continue
		case ctx.Err() != nil:
			return // cut by shutdown: sent again at the next start
		}
		s.opts.Metrics.Failed.WithLabelValues(r.Type).Inc()
		wait := s.backoff(failures)
		failures++
		s.opts.Logger.Warn("delivery events: POST failed; retrying", "domain", r.Domain, "status", status, "error", err, "retryIn", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// idle ends the worker when its queue is empty; false when an event came in meanwhile.
// The check and the end are under the lock wake takes, so an event stored after the
// check finds no worker and starts one.
func (s *Sender) idle(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.store.pending(key) {
		return false
	}
	delete(s.running, key)
	return true
}

// check returns the key to sign r with now (a rotated key signs the events still
// pending), or says why r is not to be sent any more.
func (s *Sender) check(r record) (key []byte, dropReason string) {
	if s.opts.Now().Sub(r.Time) > s.opts.GiveUp {
		return nil, DropExpired
	}
	w, key := s.opts.Resolve(r.Domain)
	switch {
	case w == nil || w.URL != r.URL:
		// Not to an endpoint the domain's owner has since moved away from.
		return nil, DropEndpointChanged
	case key == nil:
		return nil, DropNoKey
	}
	return key, ""
}

// done removes a finished event; reason, when set, counts it as dropped.
func (s *Sender) done(key string, seq uint64, eventType, reason string) {
	s.store.remove(key, seq)
	if reason != "" {
		s.drop(eventType, reason)
	}
	s.gauge()
}

func (s *Sender) backoff(failures int) time.Duration {
	d := s.opts.RetryFirst
	for range failures {
		if d >= s.opts.RetryMax/2 {
			return s.opts.RetryMax
		}
		d *= 2
	}
	return min(d, s.opts.RetryMax)
}

// post sends r signed with key, within the concurrency bound, and returns the status.
func (s *Sender) post(ctx context.Context, r record, key []byte) (int, error) {
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	ts := s.opts.Now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return 0, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "postwarden-relay")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(key, ts, r.Body))
	resp, err := s.httpClient().Do(req)
	if err != nil {
		return 0, fmt.Errorf("posting to %s: %w", req.URL.Host, err)
	}
	// Drain a little so the connection can be reused; a receiver's answer is not read.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
