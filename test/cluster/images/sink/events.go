package main

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// hook is one request the delivery events receiver got, as it got it: the test checks
// the signature over the body's exact bytes, so the receiver verifies nothing itself.
type hook struct {
	Received time.Time   `json:"received"`
	Path     string      `json:"path"`
	Header   http.Header `json:"header"`
	Body     []byte      `json:"body"`
	// Status is what the receiver answered: 503 while told to fail, else 200.
	Status int `json:"status"`
}

// keepHooks bounds the requests kept; the test sends a handful.
const keepHooks = 1000

// hooks is the HTTPS receiver of delivery events. fail, while positive, answers that
// many requests with a 503, so the test can watch the relay retry.
type hooks struct {
	mu   sync.Mutex
	got  []hook
	fail int
}

// ServeHTTP takes an event POST on the HTTPS listener.
func (h *hooks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	status := http.StatusOK
	if h.fail > 0 {
		h.fail--
		status = http.StatusServiceUnavailable
	}
	h.got = append(h.got, hook{Received: time.Now().UTC(), Path: r.URL.Path, Header: r.Header.Clone(), Body: body, Status: status})
	if len(h.got) > keepHooks {
		h.got = h.got[len(h.got)-keepHooks:]
	}
	h.mu.Unlock()
	w.WriteHeader(status)
}

// list serves GET /events on the plain HTTP API: every request received, oldest first.
func (h *hooks) list(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(h.got)
}

// setFail serves POST /events/fail?n=N: answer the next N event POSTs with 503.
func (h *hooks) setFail(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 0 {
		http.Error(w, "n must be a count", http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.fail = n
	h.mu.Unlock()
	log.Printf("sink: failing the next %d delivery event POSTs", n)
}

// startHooks serves the receiver over HTTPS on addr with the certificate in certFile
// and keyFile (cert-manager's, mounted from its Secret).
func startHooks(addr, certFile, keyFile string) *hooks {
	h := &hooks{}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		log.Fatalf("sink: delivery events certificate: %v", err)
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { log.Fatal(srv.ListenAndServeTLS("", "")) }()
	return h
}
