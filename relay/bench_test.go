package relay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

// reloadSnapshot returns the i-th of a series of distinct snapshots, each with a few
// thousand addresses, as a mid-sized customer has.
func reloadSnapshot(b *testing.B, i int) *snapshot.Snapshot {
	a, _ := creds(b)
	s := newSnapshot(b, nil, a)
	for u := range 2000 {
		s.Domains[0].Users = append(s.Domains[0].Users, snapshot.User{Address: fmt.Sprintf("user%d.%d@%s", u, i, a.domain)})
	}
	if _, err := s.Marshal(); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkReloadFromSecrets measures the time from the operator's last shard write
// to the relay enforcing the new snapshot (ms/reload), through a real API server.
func BenchmarkReloadFromSecrets(b *testing.B) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		b.Skip("KUBEBUILDER_ASSETS is not set: export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)")
	}
	kube := kubeClient(b)
	ns, err := kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	r, err := New(Config{Hostname: relayName, Submission: Listener{Addr: "127.0.0.1:0"}, KubeConfigName: "relay",
		Namespace: ns.Name, Kube: kube, SpoolDir: b.TempDir(), Logger: discard()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	snaps := make([]*snapshot.Snapshot, b.N)
	for i := range snaps {
		snaps[i] = reloadSnapshot(b, i)
	}
	b.ResetTimer()
	var total time.Duration
	for i := range b.N {
		writeShards(b, kube, ns.Name, "relay", snaps[i])
		written := time.Now()
		waitHash(b, r, snaps[i].Hash)
		total += time.Since(written)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/reload")
}

// BenchmarkReloadFromFile measures the time from replacing the config file to the relay
// enforcing it; the file source's 100 ms debounce is part of it.
func BenchmarkReloadFromFile(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "relay.json")
	snaps := make([]*snapshot.Snapshot, b.N+1)
	for i := range snaps {
		snaps[i] = reloadSnapshot(b, i)
	}
	writeConfig(b, path, snaps[b.N])
	r, err := New(Config{Hostname: relayName, Submission: Listener{Addr: "127.0.0.1:0"}, ConfigFile: path,
		SpoolDir: filepath.Join(dir, "spool"), Logger: discard()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitHash(b, r, snaps[b.N].Hash)
	b.ResetTimer()
	var total time.Duration
	for i := range b.N {
		writeConfig(b, path, snaps[i])
		written := time.Now()
		waitHash(b, r, snaps[i].Hash)
		total += time.Since(written)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/reload")
}

// BenchmarkInboundRcpt measures a port 25 RCPT round trip over loopback for a listed
// user and for an unlisted address answered from the discovery cache.
func BenchmarkInboundRcpt(b *testing.B) {
	dest := testkit.Start(b)
	dir := b.TempDir()
	path := filepath.Join(dir, "relay.json")
	s := discoverySnapshot(b, dest)
	s.Certificates = nil
	writeConfig(b, path, s)
	r, err := New(Config{Hostname: relayName, Inbound: Listener{Addr: "127.0.0.1:0"}, ConfigFile: path,
		SpoolDir: filepath.Join(dir, "spool"), Logger: discard()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitHash(b, r, s.Hash)
	for _, rcpt := range []string{"alice@covered.example", "verified@covered.example"} {
		b.Run(rcpt, func(b *testing.B) {
			cl, err := smtp.Dial(r.InboundAddr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			if err := cl.Mail("x@foreign.example", nil); err != nil {
				b.Fatal(err)
			}
			if err := cl.Rcpt(rcpt, nil); err != nil { // the callout, if any
				b.Fatal(err)
			}
			n := 1
			for b.Loop() {
				if n++; n == 1000 { // go-smtp counts repeats towards --max-recipients
					b.StopTimer()
					if err := cl.Reset(); err != nil {
						b.Fatal(err)
					}
					if err := cl.Mail("x@foreign.example", nil); err != nil {
						b.Fatal(err)
					}
					n = 0
					b.StartTimer()
				}
				if err := cl.Rcpt(rcpt, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// waitHash waits, looking every millisecond, until r enforces the config with hash.
func waitHash(b *testing.B, r *Relay, hash string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := testkit.Poll(ctx, time.Millisecond, func() error {
		if got := r.Hash(); got != hash {
			return fmt.Errorf("the relay enforces %s, not %s", got, hash)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}
