package queueadmin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/postwarden/postwarden/relay/internal/delivery"
	"github.com/postwarden/postwarden/relay/internal/spool"
)

// peer is who is at the other end of a connection; UID and PID are -1 when unknown.
type peer struct {
	UID, PID int
	known    bool
}

var unknownPeer = peer{UID: -1, PID: -1}

type peerKey struct{}

// Server serves the API on the admin socket.
type Server struct {
	path  string
	ln    *net.UnixListener
	http  *http.Server
	spool *spool.Spool
	admin *delivery.Admin
	log   *slog.Logger
	uid   int // the relay's own user; it and root may use the socket
	now   func() time.Time
}

// Listen creates the admin socket at path for the queue of sp, changed through admin.
// Call Serve, then Close.
func Listen(path string, sp *spool.Spool, admin *delivery.Admin, log *slog.Logger) (*Server, error) {
	ln, err := listen(path)
	if err != nil {
		return nil, err
	}
	s := &Server{path: path, ln: ln, spool: sp, admin: admin, log: log, uid: os.Getuid(), now: time.Now}
	s.http = &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		// The peer's credentials are read once per connection, when it is accepted.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerOf(c))
		},
	}
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve answers requests until Close.
func (s *Server) Serve() error {
	if err := s.http.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops accepting, lets requests in progress finish until ctx ends, and removes
// the socket, so that a CLI run after the relay stopped finds none.
func (s *Server) Close(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		_ = s.http.Close()
	}
	_ = s.ln.Close() // unused if Serve never ran
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/messages", s.list)
	mux.HandleFunc("GET /v1/messages/{id}", s.show)
	mux.HandleFunc("POST /v1/messages/{id}/{command}", s.command)
	mux.HandleFunc("POST /v1/retry-all", s.command)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The socket's mode already keeps other users out; this holds even if someone
		// loosens it.
		if p := peerFrom(r.Context()); p.known && p.UID != s.uid && p.UID != 0 {
			s.log.Warn("queue: refused a request from another user", "peer_uid", p.UID, "peer_pid", p.PID,
				"path", r.URL.Path)
			writeError(w, &Error{Code: CodeForbidden, Message: fmt.Sprintf(
				"user %d may not manage this relay's queue: run as the relay's user (%d) or root", p.UID, s.uid)})
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func peerFrom(ctx context.Context) peer {
	if p, ok := ctx.Value(peerKey{}).(peer); ok {
		return p
	}
	return unknownPeer
}

// errorOf maps what a command returned to the error the client gets: one code per
// case the CLI tells apart, and the text without internal details.
func errorOf(err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, spool.ErrNotFound):
		return &Error{Code: CodeNotFound, Message: "no such message in the queue"}
	case errors.Is(err, delivery.ErrInFlight):
		return &Error{Code: CodeInFlight, Message: delivery.ErrInFlight.Error()}
	case errors.Is(err, delivery.ErrBusy):
		return &Error{Code: CodeBusy, Message: delivery.ErrBusy.Error()}
	case errors.Is(err, delivery.ErrHeld):
		return &Error{Code: CodeHeld, Message: delivery.ErrHeld.Error()}
	case errors.Is(err, delivery.ErrDeliveryOff):
		return &Error{Code: CodeDeliveryOff, Message: delivery.ErrDeliveryOff.Error()}
	case errors.Is(err, spool.ErrClosed):
		return &Error{Code: CodeShuttingDown, Message: "the relay is shutting down"}
	case errors.Is(err, delivery.ErrBounceNotDone):
		return &Error{Code: CodeInternal, Message: delivery.ErrBounceNotDone.Error()}
	}
	return &Error{Code: CodeInternal, Message: "the relay could not carry out the command; its log says why"}
}

var statusOf = map[string]int{
	CodeBadRequest:   http.StatusBadRequest,
	CodeNotFound:     http.StatusNotFound,
	CodeInFlight:     http.StatusConflict,
	CodeBusy:         http.StatusConflict,
	CodeHeld:         http.StatusConflict,
	CodeDeliveryOff:  http.StatusServiceUnavailable,
	CodeShuttingDown: http.StatusServiceUnavailable,
	CodeForbidden:    http.StatusForbidden,
}

func writeError(w http.ResponseWriter, e *Error) {
	status, ok := statusOf[e.Code]
	if !ok {
		status = http.StatusInternalServerError
	}
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
