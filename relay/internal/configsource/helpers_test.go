package configsource

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/postwarden/postwarden/relay/snapshot"
)

// newSnapshot returns a valid snapshot with one domain per name, encoded.
func newSnapshot(t testing.TB, certs []snapshot.Certificate, domains ...string) (*snapshot.Snapshot, []byte) {
	t.Helper()
	s := &snapshot.Snapshot{APIVersion: snapshot.APIVersion, Certificates: certs}
	for _, d := range domains {
		s.Domains = append(s.Domains, snapshot.Domain{Name: d, Source: snapshot.ObjectRef{Namespace: "mail", Name: d},
			Users: []snapshot.User{{Address: "alice@" + d}}})
	}
	data, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return s, data
}

// recorder is a Sink that passes what it hears to channels.
type recorder struct {
	applied chan Update
	refused chan error
	reject  error // returned by Apply
}

func newRecorder() *recorder {
	return &recorder{applied: make(chan Update, 16), refused: make(chan error, 16)}
}

func (r *recorder) Apply(u Update) error { r.applied <- u; return r.reject }
func (r *recorder) Refuse(err error)     { r.refused <- err }

// waitApplied returns the next Update whose snapshot satisfies ok, skipping others.
func (r *recorder) waitApplied(t *testing.T, what string, ok func(Update) bool) Update {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case u := <-r.applied:
			if ok(u) {
				return u
			}
		case err := <-r.refused:
			t.Logf("refused while waiting for %s: %v", what, err)
		case <-deadline:
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

func (r *recorder) waitRefused(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.refused:
		return err
	case u := <-r.applied:
		t.Fatalf("applied %s, want a refusal", u.Snapshot.Hash)
	case <-time.After(30 * time.Second):
		t.Fatal("gave up waiting for a refusal")
	}
	return nil
}

func hasHash(hash string) func(Update) bool {
	return func(u Update) bool { return u.Snapshot.Hash == hash }
}

// run starts a source and stops it at the end of the test.
func run(t *testing.T, source interface {
	Run(context.Context, Sink) error
}, sink Sink) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- source.Run(ctx, sink) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("source: %v", err)
		}
	})
}
