package relay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/discoverystate"
	"github.com/postwarden/postwarden/relay/internal/discovery"
	"github.com/postwarden/postwarden/relay/snapshot"
	"github.com/postwarden/postwarden/test/testkit"
)

const discoveryPolicy = "mail/discovery"

// discoverySnapshot has covered.example under a discovery policy and plain.example
// without one, both delivered to dest; 127.0.0.1 is covered.example's sending server.
//
// dest knows its mailboxes, as a real server does: it refuses the relay's catch-all probe
// (a random postwarden-probe-… address), so that callouts it accepts are learned from.
func discoverySnapshot(t testing.TB, dest *testkit.Server) *snapshot.Snapshot {
	t.Helper()
	dest.RejectRcptIf(func(addr string) bool { return strings.HasPrefix(addr, "postwarden-probe-") },
		testkit.Reply(550, "5.1.1", "no such user"))
	ep := &snapshot.Endpoint{Host: "127.0.0.1", Port: dest.Port}
	s := &snapshot.Snapshot{APIVersion: snapshot.APIVersion, Certificates: certEntry,
		Domains: []snapshot.Domain{{
			Name: "covered.example", Source: snapshot.ObjectRef{Namespace: "mail", Name: "covered"},
			Users:            []snapshot.User{{Address: "alice@covered.example"}},
			InvalidAddresses: []string{"blocked@covered.example"},
			SendingServers:   []string{"127.0.0.1/32"},
			InboundDelivery:  ep, DiscoveryPolicy: discoveryPolicy,
			Discovered: []snapshot.DiscoveredAddress{
				{Address: "pending@covered.example", State: snapshot.DiscoveredPending},
				{Address: "expired@covered.example", State: snapshot.DiscoveredInvalid},
			},
		}, {
			Name: "plain.example", Source: snapshot.ObjectRef{Namespace: "mail", Name: "plain"},
			Users:           []snapshot.User{{Address: "bob@plain.example"}},
			InboundDelivery: ep,
		}},
		DiscoveryPolicies: []snapshot.DiscoveryPolicy{{Name: discoveryPolicy, Threshold: 3, WindowDays: 30,
			ExpiryDays: 21, AutoAddOutboundUsers: true}},
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Marshal(); err != nil {
		t.Fatal(err)
	}
	return s
}

// inbound opens a plaintext port 25 session and starts a transaction from sender.
func inbound(t *testing.T, r *Relay, sender string) *smtp.Client {
	t.Helper()
	cl, err := smtp.Dial(r.InboundAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	if err := cl.Hello("mx.sender.example"); err != nil {
		t.Fatal(err)
	}
	if err := cl.Mail(sender, nil); err != nil {
		t.Fatal(err)
	}
	return cl
}

// reply is "250" or the code and enhanced code of an RCPT's refusal.
func reply(err error) string {
	var se *smtp.SMTPError
	switch {
	case err == nil:
		return "250"
	case errors.As(err, &se):
		c := se.EnhancedCode
		return fmt.Sprintf("%d %d.%d.%d", se.Code, c[0], c[1], c[2])
	}
	return err.Error()
}

// journal reads the observations on disk in the spool folder's journal.
func journal(t testing.TB, spoolDir string) []discoverystate.Observation {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(spoolDir, DiscoveryDir, discovery.JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	var out []discoverystate.Observation
	sc := bufio.NewScanner(bytes.NewReader(data))
	for first := true; sc.Scan(); first = false {
		if first {
			continue // the header
		}
		var o discoverystate.Observation
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			t.Fatalf("journal line %q: %v", sc.Text(), err)
		}
		out = append(out, o)
	}
	return out
}

// kinds lists the journal's observations as "Kind address".
func kinds(obs []discoverystate.Observation) []string {
	var out []string
	for _, o := range obs {
		out = append(out, string(o.Kind)+" "+o.Address)
	}
	return out
}

// silentServer accepts connections and never says a word.
func silentServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

func TestDiscoveryOnPort25(t *testing.T) {
	dest := testkit.Start(t)
	dest.RejectRcpt("nobody@covered.example", testkit.Reply(550, "5.1.1", "no such user"))
	dest.RejectRcpt("busy@covered.example", testkit.Reply(451, "4.3.0", "try later"))
	s := discoverySnapshot(t, dest)
	// slow.example's server accepts connections and never greets.
	s.Domains = append(s.Domains, snapshot.Domain{Name: "slow.example", Source: snapshot.ObjectRef{Namespace: "mail", Name: "slow"},
		InboundDelivery: &snapshot.Endpoint{Host: "127.0.0.1", Port: silentServer(t)}, DiscoveryPolicy: discoveryPolicy})
	f := startFileRelay(t, s, func(c *Config) {
		c.Discovery.CommandTimeout = 300 * time.Millisecond
	})
	waitFor(t, "readiness", f.Ready)

	cases := []struct {
		name, rcpt, want string
		callouts         int
	}{
		{"a callout's 250 accepts", "new@covered.example", "250", 1},
		{"a second question is a cache hit", "New@covered.example", "250", 1},
		{"a callout's 550 refuses", "nobody@covered.example", "550 5.1.1", 1},
		{"a callout's 4xx defers", "busy@covered.example", "450 4.1.1", 1},
		{"a silent server defers", "someone@slow.example", "450 4.1.1", 0},
		{"without a policy, an unknown address is refused unasked", "stranger@plain.example", "550 5.1.1", 0},
		{"a discovered address that expired is refused unasked", "expired@covered.example", "550 5.1.1", 0},
		{"a discovered Pending address is accepted unasked", "pending@covered.example", "250", 0},
		{"the spec's invalid address is refused, though the server would take it", "blocked@covered.example", "550 5.1.1", 0},
		{"the spec's user is accepted unasked", "alice@covered.example", "250", 0},
	}
	cl := inbound(t, f.Relay, "x@foreign.example")
	for _, tc := range cases {
		if got := reply(cl.Rcpt(tc.rcpt, nil)); got != tc.want {
			t.Errorf("%s: RCPT TO:<%s> = %q, want %q", tc.name, tc.rcpt, got, tc.want)
		}
		if n := dest.RcptCount(tc.rcpt); n != tc.callouts {
			t.Errorf("%s: the destination was asked %d times about %s, want %d", tc.name, n, tc.rcpt, tc.callouts)
		}
	}
	if got, want := kinds(journal(t, f.Relay.cfg.SpoolDir)), []string{"Verified new@covered.example", "Refused nobody@covered.example"}; !slices.Equal(got, want) {
		t.Errorf("journal holds %q, want %q", got, want)
	}
	resp, err := http.Get("http://" + f.HTTPAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range []string{
		`postwarden_relay_discovery_callouts_total{outcome="accepted"} 1`,
		`postwarden_relay_discovery_callouts_total{outcome="refused"} 1`,
		`postwarden_relay_discovery_callouts_total{outcome="tempfailed"} 2`,
		`postwarden_relay_discovery_cache_hits_total 1`,
		`postwarden_relay_discovery_journal_pending 2`,
		`postwarden_relay_discovery_observations_total{kind="Verified"} 1`,
	} {
		if !strings.Contains(string(body), line+"\n") {
			t.Errorf("/metrics lacks %s", line)
		}
	}
}

// deliverTo delivers inbound mail to the snapshot's own servers, with a loopback DNS
// server so that nothing is looked up elsewhere.
func deliverTo(t *testing.T) func(*Config) {
	dns := testkit.StartDNS(t)
	return func(c *Config) { c.Delivery = &DeliveryConfig{DNSServers: []string{dns.Addr}} }
}

func TestDiscoveryRecordsCleanDeliveries(t *testing.T) {
	dest := testkit.Start(t)
	f := startFileRelay(t, discoverySnapshot(t, dest), deliverTo(t))
	waitFor(t, "readiness", f.Ready)

	cl := inbound(t, f.Relay, "")
	for _, rcpt := range []string{"new@covered.example", "bounced@covered.example", "pending@covered.example", "alice@covered.example"} {
		if err := cl.Rcpt(rcpt, nil); err != nil {
			t.Fatalf("RCPT TO:<%s>: %v", rcpt, err)
		}
	}
	// The server knew bounced@ at the callout, and refuses it at delivery.
	dest.RejectRcpt("bounced@covered.example", testkit.Reply(550, "5.1.1", "gone meanwhile"))
	w, err := cl.Data()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(w, "From: <x@foreign.example>\r\nSubject: hello\r\n\r\nhello\r\n")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	dest.WaitMessages(t, 1, 30*time.Second)
	waitFor(t, "the message to leave the spool", func() bool { return f.Spool().Len() == 0 })
	want := []string{"Verified new@covered.example", "Verified bounced@covered.example",
		"Delivered new@covered.example", "Delivered pending@covered.example"}
	var got []string
	waitFor(t, "the Delivered observations", func() bool {
		got = kinds(journal(t, f.Relay.cfg.SpoolDir))
		return len(got) >= len(want)
	})
	// Delivered observations come in the order the server's replies were applied.
	slices.Sort(got[2:])
	if !slices.Equal(got, want) {
		t.Errorf("journal holds %q, want %q: a clean delivery for each callout-accepted or Pending address, none for the spec's user or a bounce", got, want)
	}
}

func TestDiscoveryRecordsSendingServersUnknownSenders(t *testing.T) {
	dest := testkit.Start(t)
	f := startFileRelay(t, discoverySnapshot(t, dest))
	waitFor(t, "readiness", f.Ready)
	for _, from := range []string{"new.sender@covered.example", "alice@covered.example", "pending@covered.example"} {
		if err := sendPlain(f.InboundAddr().String(), from, "someone@elsewhere.example",
			"From: <"+from+">\r\nSubject: out\r\n\r\nhi\r\n"); err != nil {
			t.Fatalf("sending server sending as %s: %v", from, err)
		}
	}
	if got, want := kinds(journal(t, f.Relay.cfg.SpoolDir)), []string{"OutboundSender new.sender@covered.example",
		"OutboundSender pending@covered.example"}; !slices.Equal(got, want) {
		t.Errorf("journal holds %q, want %q: unknown and Pending senders only", got, want)
	}
}

func TestDiscoveryJournalSurvivesARestart(t *testing.T) {
	dest := testkit.Start(t)
	s := discoverySnapshot(t, dest)
	first := startFileRelay(t, s)
	waitFor(t, "readiness", first.Ready)
	cl := inbound(t, first.Relay, "x@foreign.example")
	for _, rcpt := range []string{"one@covered.example", "two@covered.example"} {
		if err := cl.Rcpt(rcpt, nil); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	before := first.journal.Batch("", 1<<20)
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}

	second := startFileRelay(t, s, func(c *Config) { c.SpoolDir = first.cfg.SpoolDir })
	after := second.journal.Batch("", 1<<20)
	if after.Journal != before.Journal || !slices.Equal(kinds(after.Observations), kinds(before.Observations)) ||
		len(after.Observations) != 2 {
		t.Fatalf("after a restart the journal is %s %q, want %s %q", after.Journal, kinds(after.Observations),
			before.Journal, kinds(before.Observations))
	}
	waitFor(t, "readiness", second.Ready)
	cl = inbound(t, second.Relay, "x@foreign.example")
	if err := cl.Rcpt("three@covered.example", nil); err != nil {
		t.Fatal(err)
	}
	obs := second.journal.Batch("", 1<<20).Observations
	if len(obs) != 3 || obs[2].Seq != obs[1].Seq+1 {
		t.Errorf("observations after the restart %+v: sequence numbers must go on", obs)
	}
}

func TestDiscoveryWithSwaks(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("swaks is not installed (make test-deps installs it)")
		}
		t.Skip("swaks is not installed: run make test-deps")
	}
	dest := testkit.Start(t)
	dest.RejectRcpt("nobody@covered.example", testkit.Reply(550, "5.1.1", "no such user"))
	f := startFileRelay(t, discoverySnapshot(t, dest))
	waitFor(t, "readiness", f.Ready)
	run := func(rcpt string) (string, error) {
		out, err := exec.CommandContext(t.Context(), swaks, "--server", f.InboundAddr().String(),
			"--helo", "mx.sender.example", "--from", "x@foreign.example", "--to", rcpt, "--timeout", "60").CombinedOutput()
		return string(out), err
	}
	if out, err := run("new@covered.example"); err != nil || !strings.Contains(out, "<-  250 2.0.0 OK: queued as") {
		t.Fatalf("swaks to a callout-verified address: %v\n%s", err, out)
	}
	if out, err := run("nobody@covered.example"); err == nil || !strings.Contains(out, "<** 550 5.1.1 <nobody@covered.example>: Recipient address rejected: user unknown") {
		t.Fatalf("swaks to an address the server refuses: %v\n%s", err, out)
	}
}
