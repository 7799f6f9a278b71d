// Command sink is the mail destination of the test cluster, run as a pod: a catch-all
// SMTP server that counts each message by its Message-ID, and an HTTP endpoint that
// reports the counts, so that the test outside the cluster can tell what was delivered,
// what was lost and what arrived twice.
//
//	GET /messages   {"total": N, "byMessageID": {"<id>": count, ...}}
package main

import (
	"bufio"
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
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
)

// counts is what the sink received.
type counts struct {
	mu          sync.Mutex
	Total       int            `json:"total"`
	ByMessageID map[string]int `json:"byMessageID"`
}

func (c *counts) add(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Total++
	c.ByMessageID[id]++
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
	header, err := textproto.NewReader(bufio.NewReader(r)).ReadMIMEHeader()
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	s.counts.add(header.Get("Message-Id"))
	return nil
}

func main() {
	smtpAddr := flag.String("smtp-listen", ":2525", "SMTP address")
	httpAddr := flag.String("http-listen", ":8080", "address of GET /messages")
	flag.Parse()

	c := &counts{ByMessageID: map[string]int{}}
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
	mux := http.NewServeMux()
	mux.Handle("GET /messages", c)
	go func() { log.Fatal(http.ListenAndServe(*httpAddr, mux)) }()
	log.Printf("sink: SMTP on %s, counts on http://%s/messages", *smtpAddr, *httpAddr)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
