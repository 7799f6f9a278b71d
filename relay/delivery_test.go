package relay

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/internal/tlscert/tlscerttest"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

// deliverVia returns a Config edit that delivers through sink as the smarthost, with a
// loopback DNS server so that nothing is ever looked up elsewhere.
func deliverVia(t *testing.T, sink *testkit.Server) func(*Config) {
	dns := testkit.StartDNS(t)
	return func(c *Config) {
		c.Delivery = &DeliveryConfig{Smarthost: sink.Addr, DNSServers: []string{dns.Addr}}
	}
}

// writeProcessConfig writes s and a certificate for relayName, issued by ca, into a new
// folder, for a relay process; it returns the config file and a spool folder.
func writeProcessConfig(t *testing.T, ca *testkit.CA, s *snapshot.Snapshot) (config, spoolDir string) {
	t.Helper()
	dir := t.TempDir()
	tlscerttest.WriteFiles(t, dir, "relay", tlscerttest.Issue(t, ca, relayName))
	config = filepath.Join(dir, "relay.json")
	writeConfig(t, config, s)
	return config, filepath.Join(dir, "spool")
}

func splitHostPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}

// sendPlain sends one message on port 25 style: no TLS, no AUTH.
func sendPlain(addr, from, to, body string) error {
	cl, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.Hello("mx.sender.example"); err != nil {
		return err
	}
	if err := cl.SendMail(from, []string{to}, strings.NewReader(body)); err != nil {
		return err
	}
	return cl.Quit()
}

func TestSubmittedMailIsDeliveredAndLeavesTheSpool(t *testing.T) {
	a, _ := creds(t)
	sink := testkit.Start(t)
	f := startFileRelay(t, newSnapshot(t, certEntry, a), deliverVia(t, sink))
	waitFor(t, "readiness", f.Ready)

	cl, err := login(f.SubmissionAddr().String(), f.ca.Pool(), a)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := send(cl, "sender@"+a.domain, "someone@elsewhere.example", "through the smarthost"); err != nil {
		t.Fatal(err)
	}
	got := sink.WaitMessages(t, 1, 30*time.Second)
	if got[0].From != "sender@"+a.domain || len(got[0].To) != 1 || got[0].To[0] != "someone@elsewhere.example" {
		t.Errorf("the smarthost received envelope %q -> %q", got[0].From, got[0].To)
	}
	if !strings.Contains(string(got[0].Data), "through the smarthost") || !strings.Contains(string(got[0].Data), "Received:") {
		t.Errorf("the smarthost received:\n%s", got[0].Data)
	}
	waitFor(t, "the delivered message to leave the spool", func() bool { return f.Spool().Len() == 0 })
}

// withInboundDelivery makes server the own server of s's first domain.
func withInboundDelivery(t *testing.T, s *snapshot.Snapshot, server *testkit.Server) *snapshot.Snapshot {
	t.Helper()
	host, port := splitHostPort(t, server.Addr)
	s.Domains[0].InboundDelivery = &snapshot.Endpoint{Host: host, Port: port}
	if _, err := s.Marshal(); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInboundMailGoesToTheDomainsOwnServer(t *testing.T) {
	a, _ := creds(t)
	customer, smarthost := testkit.Start(t), testkit.Start(t)
	s := withInboundDelivery(t, newSnapshot(t, certEntry, a), customer)
	f := startFileRelay(t, s, deliverVia(t, smarthost))
	waitFor(t, "readiness", f.Ready)

	if err := sendPlain(f.InboundAddr().String(), "news@outside.example", "sender@"+a.domain, "Subject: hi\r\n\r\nfor you\r\n"); err != nil {
		t.Fatal(err)
	}
	got := customer.WaitMessages(t, 1, 30*time.Second)
	if got[0].To[0] != "sender@"+a.domain {
		t.Errorf("the domain's server received the envelope %q -> %q", got[0].From, got[0].To)
	}
	if n := len(smarthost.Messages()); n != 0 {
		t.Errorf("inbound mail also went to the smarthost (%d messages)", n)
	}
}

// A delivery cut by SIGKILL is retried after the restart: the message is never lost (a
// duplicate is acceptable).
func TestDeliveryInterruptedBySIGKILLResumesAfterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	a, _ := creds(t)
	sink := testkit.Start(t)
	dns := testkit.StartDNS(t)
	release := sink.HoldData()

	ca := testkit.NewCA(t)
	config, spoolDir := writeProcessConfig(t, ca, newSnapshot(t, certEntry, a))
	args := []string{"--config", config, "--spool-dir", spoolDir, "--hostname", relayName,
		"--delivery=true", "--smarthost", sink.Addr, "--dns-servers", dns.Addr, "--retry-first", "1s"}

	p := startProcess(t, bin, args...)
	cl, err := login(p.submission, ca.Pool(), a)
	if err != nil {
		t.Fatal(err)
	}
	id, err := send(cl, "sender@"+a.domain, "someone@elsewhere.example", "interrupted")
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()
	waitFor(t, "the relay to be in the middle of delivering", func() bool { return sink.Held() > 0 })
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	// The held session read the whole message, so the sink keeps it once released, but
	// the relay died before the reply: it must deliver again (a counted duplicate).
	release()

	p = startProcess(t, bin, args...)
	got := sink.WaitMessages(t, 2, 60*time.Second)
	if !strings.Contains(string(got[len(got)-1].Data), "interrupted") {
		t.Errorf("delivered after restart:\n%s", got[len(got)-1].Data)
	}
	p.terminate(t)
	s, err := spool.Open(spoolDir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get(id); err == nil {
		t.Errorf("message %s is still queued after its delivery", id)
	}
}

// deliveryWaiting is 1 while delivery holds the queue back until a config is loaded.
const deliveryWaiting = "postwarden_relay_delivery_waiting_for_config"

// TestQueuedMailWaitsForTheFirstConfig: a relay that starts with mail in its spool routes
// none of it before a config is loaded, since without one it knows neither the domain's
// own server nor the TLS policies.
func TestQueuedMailWaitsForTheFirstConfig(t *testing.T) {
	a, _ := creds(t)
	customer, smarthost := testkit.Start(t), testkit.Start(t)
	s := withInboundDelivery(t, newSnapshot(t, certEntry, a), customer)
	f := startFileRelay(t, s) // no delivery: the mail stays in the spool
	waitFor(t, "readiness", f.Ready)
	if err := sendPlain(f.InboundAddr().String(), "news@outside.example", "sender@"+a.domain, "Subject: hi\r\n\r\nqueued\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.stop(); err != nil {
		t.Fatal(err)
	}

	// The same spool, with delivery, and no config yet.
	if err := os.Remove(f.config); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Hostname: relayName, Inbound: Listener{Addr: "127.0.0.1:0"}, ConfigFile: f.config,
		SpoolDir: filepath.Join(f.dir, "spool"), HTTPAddr: "127.0.0.1:0", GracePeriod: 5 * time.Second}
	deliverVia(t, smarthost)(&cfg)
	r, _ := run(t, cfg)
	// Without the wait for a config, the runner's first pass over the spool sends the
	// message to the smarthost at once, and the gauge never shows the wait.
	waitFor(t, "delivery to hold the queue back for a config", func() bool {
		if n := len(smarthost.Messages()) + len(customer.Messages()); n != 0 {
			t.Fatalf("%d messages were delivered before any config was loaded", n)
		}
		return scrapeMetrics(t, r, deliveryWaiting)[deliveryWaiting] == 1
	})
	if code := readyz(t, r); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d without a config, want %d", code, http.StatusServiceUnavailable)
	}
	if got := queueMetrics(t, r)[queueActive]; got != 1 || r.Spool().Len() != 1 {
		t.Fatalf("the spool holds %d messages (%v active), want the queued one", r.Spool().Len(), got)
	}

	writeConfig(t, f.config, s)
	got := customer.WaitMessages(t, 1, 30*time.Second)
	if v := scrapeMetrics(t, r, deliveryWaiting)[deliveryWaiting]; v != 0 {
		t.Errorf("%s = %v once a config is loaded, want 0", deliveryWaiting, v)
	}
	if !strings.Contains(string(got[0].Data), "queued") {
		t.Errorf("the domain's server received:\n%s", got[0].Data)
	}
	if n := len(smarthost.Messages()); n != 0 {
		t.Errorf("the smarthost got %d messages meant for the domain's own server", n)
	}
}
