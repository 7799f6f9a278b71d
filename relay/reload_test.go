package relay

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postwarden/postwarden/relay/internal/configsource"
	"github.com/postwarden/postwarden/relay/internal/metrics"
	"github.com/postwarden/postwarden/relay/internal/tlscert"
	"github.com/postwarden/postwarden/relay/internal/tlscert/tlscerttest"
	"github.com/postwarden/postwarden/test/testkit"
)

// The reloader compiles each snapshot once into the one view that the sessions,
// delivery and discovery read; a certificate renewal compiles nothing again, and an
// update that does not compile leaves the view in force untouched.
func TestReloaderKeepsOneViewPerSnapshot(t *testing.T) {
	a, b := creds(t)
	ca := testkit.NewCA(t)
	r := &reloader{hostname: relayName, log: slog.New(slog.DiscardHandler),
		metrics: metrics.NewConfig(prometheus.NewRegistry()), now: time.Now, first: make(chan struct{})}
	cert := func() []tlscert.Pair { return []tlscert.Pair{tlscerttest.Issue(t, ca, relayName)} }

	s1 := newSnapshot(t, nil, a)
	if err := r.Apply(configsource.Update{Snapshot: s1, Certificates: cert()}); err != nil {
		t.Fatal(err)
	}
	first := r.View()
	if r.Directory() != first.Directory() || r.Certificates() != first.Certificates() || r.Hash() != s1.Hash {
		t.Fatal("the reloader's readers do not all read the view in force")
	}
	if r.Certificates().Len() != 1 || r.Directory().Domain("example.com") == nil {
		t.Fatalf("the view lacks the certificate or the domain")
	}

	same := *s1
	if err := r.Apply(configsource.Update{Snapshot: &same, Certificates: cert()}); err != nil {
		t.Fatal(err)
	}
	renewed := r.View()
	if renewed == first || renewed.Certificates() == first.Certificates() {
		t.Fatal("a renewed certificate did not make a new view")
	}
	if renewed.Directory() != first.Directory() {
		t.Fatal("a renewed certificate compiled the unchanged snapshot again")
	}

	bad := newSnapshot(t, nil, a, b)
	bad.Domains[0].FunctionalAccounts = []string{"sender@example.com"} // already a user
	if _, err := bad.Marshal(); err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(configsource.Update{Snapshot: bad, Certificates: cert()}); err == nil {
		t.Fatal("a snapshot listing an address twice was applied")
	}
	if r.View() != renewed {
		t.Fatal("a refused update changed the view in force")
	}

	s2 := newSnapshot(t, nil, a, b)
	if err := r.Apply(configsource.Update{Snapshot: s2, Certificates: cert()}); err != nil {
		t.Fatal(err)
	}
	if r.Hash() != s2.Hash || r.Directory().Domain("example.net") == nil {
		t.Fatal("a new snapshot was not compiled")
	}
}

// The delivery events CA bundle compiles into the view's roots; an unchanged bundle
// keeps its pool through any update (so the events sender keeps its connections), and
// one that does not parse refuses the update.
func TestReloaderCompilesTheEventsCABundleOnce(t *testing.T) {
	a, b := creds(t)
	r := &reloader{hostname: relayName, log: slog.New(slog.DiscardHandler),
		metrics: metrics.NewConfig(prometheus.NewRegistry()), now: time.Now, first: make(chan struct{})}

	s1 := newSnapshot(t, nil, a)
	if err := r.Apply(configsource.Update{Snapshot: s1}); err != nil {
		t.Fatal(err)
	}
	if r.View().EventRoots() != nil {
		t.Fatal("roots without a bundle: want nil, the system roots")
	}
	bundle := []byte(testkit.NewCA(t).PEM())
	if err := r.Apply(configsource.Update{Snapshot: s1, EventsCA: bundle}); err != nil {
		t.Fatal(err)
	}
	first := r.View().EventRoots()
	if first == nil {
		t.Fatal("a bundle made no roots")
	}
	if err := r.Apply(configsource.Update{Snapshot: newSnapshot(t, nil, a, b), EventsCA: bytes.Clone(bundle)}); err != nil {
		t.Fatal(err)
	}
	if r.View().EventRoots() != first {
		t.Fatal("a new snapshot with the same bundle made a new pool")
	}
	if err := r.Apply(configsource.Update{Snapshot: s1, EventsCA: []byte("garbage")}); err == nil {
		t.Fatal("a bundle without a certificate was applied")
	}
	if r.View().EventRoots() != first || r.Hash() == s1.Hash {
		t.Fatal("a refused bundle changed the view in force")
	}
	if err := r.Apply(configsource.Update{Snapshot: s1, EventsCA: []byte(testkit.NewCA(t).PEM())}); err != nil {
		t.Fatal(err)
	}
	if r.View().EventRoots() == first {
		t.Fatal("a new bundle kept the old pool")
	}
}
