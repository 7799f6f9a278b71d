package testkit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Messages returns a copy of the messages accepted so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// RcptCount returns how many RCPT TO commands named addr (in any case), whatever
// their reply: verification callouts ask with RCPT and never send DATA.
func (s *Server) RcptCount(addr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rcptCount[strings.ToLower(addr)]
}

// Connections returns how many TCP connections the server has accepted.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.connections
}

// Wait returns the first message for which match holds, waiting for it until ctx ends.
func (s *Server) Wait(ctx context.Context, match func(Message) bool) (Message, error) {
	var found Message
	err := s.waitUntil(ctx, func(msgs []Message) bool {
		for _, m := range msgs {
			if match(m) {
				found = m
				return true
			}
		}
		return false
	})
	if err != nil {
		return Message{}, fmt.Errorf("waiting for a message at %s: %w", s.Addr, err)
	}
	return found, nil
}

// WaitMessages waits until at least n messages have arrived and returns them; it fails
// the test after timeout.
func (s *Server) WaitMessages(t TB, n int, timeout time.Duration) []Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	got := 0
	if err := s.waitUntil(ctx, func(msgs []Message) bool { got = len(msgs); return got >= n }); err != nil {
		t.Fatalf("testkit: %d messages after %v, want %d", got, timeout, n)
	}
	return s.Messages()
}

// waitUntil calls done with the messages so far, again whenever one arrives, until it
// returns true or ctx ends.
func (s *Server) waitUntil(ctx context.Context, done func([]Message) bool) error {
	for {
		s.mu.Lock()
		msgs, changed := s.messages, s.changed
		s.mu.Unlock()
		if done(msgs) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// accept saves m when the server saves messages, hands it to OnMessage's function, then
// records it and wakes the waiters.
func (s *Server) accept(m Message) error {
	if s.saveDir != "" {
		if err := s.save(&m); err != nil {
			return err
		}
	}
	if s.onMessage != nil {
		s.onMessage(m)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages = append(s.messages, m)
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// save writes m to the save folder and sets its Path.
func (s *Server) save(m *Message) error {
	s.mu.Lock()
	s.saved++
	seq := s.saved
	s.mu.Unlock()
	name := fmt.Sprintf("%s-%04d.eml", time.Now().UTC().Format("20060102T150405.000"), seq)
	m.Path = filepath.Join(s.saveDir, name)
	if err := os.MkdirAll(s.saveDir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(m.Path, m.Data, 0o644)
}
