//go:build cluster

package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// login is an SMTP AUTH credential as its Secret gives it.
type login struct {
	username, password, sender string
}

// submitter sends through the relay's submission node port, STARTTLS verified against
// the CA cert-manager signed with, then AUTH PLAIN.
type submitter struct {
	addr  string
	roots *x509.CertPool
	login login
}

func (s submitter) dial() (*smtp.Client, error) {
	c, err := smtp.DialStartTLS(s.addr, &tls.Config{ServerName: relayName, RootCAs: s.roots, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, err
	}
	if err := c.Auth(sasl.NewPlainClient("", s.login.username, s.login.password)); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// send sends one message with the given Message-ID on c.
func send(c *smtp.Client, from, to, messageID string) error {
	msg := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: cluster test\r\nMessage-ID: <%s>\r\nDate: %s\r\n\r\nsent by test/cluster\r\n",
		from, to, messageID, time.Now().Format(time.RFC1123Z))
	return c.SendMail(from, []string{to}, strings.NewReader(msg))
}

// sinkCounts reads what the sink received, by Message-ID (without angle brackets).
func sinkCounts(t testing.TB) map[string]int {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://%s:%d/messages", nodeIP, sinkHTTPPort))
	if err != nil {
		t.Fatalf("reading the sink's counts: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		ByMessageID map[string]int `json:"byMessageID"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for id, n := range body.ByMessageID {
		counts[strings.Trim(id, "<>")] += n
	}
	return counts
}

// load is a steady, bounded stream of messages from outside the cluster: conns
// connections, each sending one message every interval and reconnecting after an
// error. Only messages the relay acknowledged with 250 are counted as acknowledged.
type load struct {
	s        submitter
	to       string
	prefix   string
	stop     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	acked    []string
	failures atomic.Int64
	seq      atomic.Int64
}

func startLoad(s submitter, to, prefix string, conns int, interval time.Duration) *load {
	l := &load{s: s, to: to, prefix: prefix, stop: make(chan struct{})}
	for i := range conns {
		l.wg.Add(1)
		go l.run(i, interval)
	}
	return l
}

func (l *load) run(worker int, interval time.Duration) {
	defer l.wg.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var c *smtp.Client
	defer func() {
		if c != nil {
			_ = c.Quit()
		}
	}()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		if c == nil {
			var err error
			if c, err = l.s.dial(); err != nil {
				l.failures.Add(1)
				c = nil
				continue
			}
		}
		id := fmt.Sprintf("%s-%d-%d@cluster.test", l.prefix, worker, l.seq.Add(1))
		if err := send(c, l.s.login.sender, l.to, id); err != nil {
			l.failures.Add(1)
			_ = c.Close()
			c = nil
			continue
		}
		l.mu.Lock()
		l.acked = append(l.acked, id)
		l.mu.Unlock()
	}
}

// finish stops the load and returns the acknowledged Message-IDs.
func (l *load) finish() []string {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.acked...)
}

// faultResult is one row of the fault table.
type faultResult struct {
	fault                             string
	acked, delivered, lost, duplicate int
	clientErrors                      int64
}

// account waits until every acknowledged message has reached the sink (or timeout
// passes) and counts what was delivered, lost and duplicated.
func account(t testing.TB, fault string, l *load, acked []string, timeout time.Duration) faultResult {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		counts := sinkCounts(t)
		r := faultResult{fault: fault, acked: len(acked), clientErrors: l.failures.Load()}
		for _, id := range acked {
			switch n := counts[id]; {
			case n == 0:
				r.lost++
			default:
				r.delivered++
				r.duplicate += n - 1
			}
		}
		if r.lost == 0 || time.Now().After(deadline) {
			return r
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// nodePort is the node port of a Service port.
func nodePort(t testing.TB, ns, svc, port string) string {
	t.Helper()
	p := kube(t, "", "get", "service", "-n", ns, svc, "-o", fmt.Sprintf(`jsonpath={.spec.ports[?(@.name=="%s")].nodePort}`, port))
	if p == "" {
		t.Fatalf("service %s/%s has no node port %q", ns, svc, port)
	}
	return net.JoinHostPort(nodeIP, p)
}
