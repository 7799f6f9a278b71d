// Command sink is the mail destination of the test cluster, run as a pod: a catch-all
// SMTP server that counts each message by its Message-ID, and an HTTP endpoint that
// reports the counts, so that the test outside the cluster can tell what was delivered,
// what was lost and what arrived twice. It keeps the last messages whole, for the test
// to verify their DKIM signatures, and it is the cluster's DNS server for the records
// the test publishes (the DKIM, SPF and DMARC records the operator looks up).
//
//	GET  /messages          {"total": N, "byMessageID": {"<id>": count, ...}}
//	GET  /messages/raw?id=  the last message with that Message-ID, as received
//	POST /dns               records in zone-file syntax, one per line, to serve
//	GET  /logins            {"<Message-ID>": "<user>", ...}: what arrived on the AUTH
//	                        listener (STARTTLS, then AUTH PLAIN as -auth-user), and as whom
//	GET  /events            [{"received", "path", "header", "body" (base64), "status"}, ...]:
//	                        every POST the delivery events receiver got, oldest first
//	POST /events/fail?n=N   answer the receiver's next N POSTs with 503
//
// The AUTH listener is the smarthost a MailDomain's outboundRoute logs in to. The
// delivery events receiver (-events-listen, HTTPS with the certificate cert-manager
// issued it, -events-cert and -events-key) is a MailDomain's deliveryEvents endpoint: it
// answers every POST with 200 (or 503 when told to fail) and keeps what came, headers
// and exact body, for the test to verify the signatures.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/test/testkit"
)

// counts is what the sink received.
type counts struct {
	mu          sync.Mutex
	Total       int            `json:"total"`
	ByMessageID map[string]int `json:"byMessageID"`
	// raw holds the last keepRaw messages whole, by Message-ID; order is their arrival.
	raw   map[string][]byte
	order []string
}

// keepRaw bounds the memory the whole messages take under the test's load.
const keepRaw = 256

func (c *counts) add(id string, raw []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Total++
	c.ByMessageID[id]++
	if _, ok := c.raw[id]; !ok {
		c.order = append(c.order, id)
	}
	c.raw[id] = raw
	if len(c.order) > keepRaw {
		delete(c.raw, c.order[0])
		c.order = c.order[1:]
	}
}

func (c *counts) serveRaw(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	raw, ok := c.raw[r.URL.Query().Get("id")]
	c.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "message/rfc822")
	_, _ = w.Write(raw)
}

func (c *counts) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(c)
}

type backend struct{ counts *counts }

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{counts: b.counts}, nil }

type session struct{ counts *counts }

func (s *session) Mail(string, *smtp.MailOptions) error { return nil }
func (s *session) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *session) Reset()                               {}
func (s *session) Logout() error                        { return nil }

func (s *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	header, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw))).ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	s.counts.add(header.Get("Message-Id"), raw)
	return nil
}

func main() {
	smtpAddr := flag.String("smtp-listen", ":2525", "SMTP address")
	httpAddr := flag.String("http-listen", ":8080", "address of GET /messages")
	dnsAddr := flag.String("dns-listen", ":5353", "UDP address of the DNS server")
	authAddr := flag.String("auth-listen", ":2587", "SMTP address that asks for STARTTLS and AUTH")
	authUser := flag.String("auth-user", "route-user", "the username the AUTH listener accepts")
	authPassword := flag.String("auth-password", "route-password-0123456789", "its password")
	eventsAddr := flag.String("events-listen", ":8443", "HTTPS address of the delivery events receiver")
	eventsCert := flag.String("events-cert", "", "PEM certificate of the delivery events receiver; empty: no receiver")
	eventsKey := flag.String("events-key", "", "PEM key of -events-cert")
	flag.Parse()

	c := &counts{ByMessageID: map[string]int{}, raw: map[string][]byte{}}
	dns, err := testkit.NewDNSServer(*dnsAddr)
	if err != nil {
		log.Fatal(err)
	}
	srv := smtp.NewServer(backend{counts: c})
	srv.Domain = "sink.test"
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.MaxMessageBytes = 50 << 20
	srv.MaxRecipients = 1000
	ln, err := net.Listen("tcp", *smtpAddr)
	if err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(srv.Serve(ln)) }()
	logins := startAuthListener(*authAddr, *authUser, *authPassword, c)
	mux := http.NewServeMux()
	mux.Handle("GET /logins", logins)
	if *eventsCert != "" {
		events := startHooks(*eventsAddr, *eventsCert, *eventsKey)
		mux.HandleFunc("GET /events", events.list)
		mux.HandleFunc("POST /events/fail", events.setFail)
	}
	mux.Handle("GET /messages", c)
	mux.HandleFunc("GET /messages/raw", c.serveRaw)
	mux.HandleFunc("POST /dns", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var records []string
		for line := range strings.SplitSeq(string(body), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				records = append(records, line)
			}
		}
		if err := dns.AddRecords(records...); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		log.Printf("sink: serving %d more DNS records", len(records))
	})
	go func() { log.Fatal(http.ListenAndServe(*httpAddr, mux)) }()
	log.Printf("sink: SMTP on %s, counts on http://%s/messages, DNS on %s", *smtpAddr, *httpAddr, dns.Addr)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}

// logins maps the Message-ID of each message taken on the AUTH listener to the user it
// came in as.
type logins struct {
	mu   sync.Mutex
	byID map[string]string
}

func (l *logins) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(l.byID)
}

// startAuthListener serves SMTP on addr with STARTTLS (a self-signed certificate: routes
// are Opportunistic unless a TLS policy says otherwise) and AUTH PLAIN for user alone;
// what arrives is counted as on the plain listener, and its login recorded.
func startAuthListener(addr, user, password string, c *counts) *logins {
	l := &logins{byID: map[string]string{}}
	ca, err := testkit.GenerateCA()
	if err != nil {
		log.Fatal(err)
	}
	cert, err := ca.Issue(testkit.Names("sink.sink.svc"))
	if err != nil {
		log.Fatal(err)
	}
	check := func(u, p string) error {
		if u != user || p != password {
			return errors.New("invalid credentials")
		}
		return nil
	}
	_, err = testkit.NewServer(addr, testkit.WithCertificate(cert), testkit.WithAuth(check), testkit.WithDomain("sink.test"),
		testkit.OnMessage(func(m testkit.Message) {
			header, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(m.Data))).ReadMIMEHeader()
			id := header.Get("Message-Id")
			c.add(id, m.Data)
			l.mu.Lock()
			l.byID[id] = m.User
			l.mu.Unlock()
		}))
	if err != nil {
		log.Fatal(err)
	}
	return l
}
