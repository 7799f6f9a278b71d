package queueadmin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/postwarden/postwarden/relay/internal/dsn"
	"github.com/postwarden/postwarden/relay/internal/spool"
)

// maxReason bounds the reason written to the log.
const maxReason = 1000

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		writeError(w, &Error{Code: CodeBadRequest, Message: err.Error()})
		return
	}
	now := s.now()
	out := []Message{}
	for _, id := range s.spool.IDs() {
		m, err := s.spool.Get(id)
		if errors.Is(err, spool.ErrNotFound) {
			continue // delivered or removed since IDs
		}
		if err != nil {
			s.log.Error("queue: cannot read a queued message", "queue_id", id, "error", err)
			continue
		}
		if msg := s.summarize(m, now); f.matches(msg, now) {
			out = append(out, msg)
		}
	}
	p := peerFrom(r.Context())
	s.log.Debug("queue: listed", "peer_uid", p.UID, "peer_pid", p.PID, "filter", r.URL.RawQuery, "count", len(out))
	writeJSON(w, http.StatusOK, struct {
		Messages []Message `json:"messages"`
	}{out})
}

func (s *Server) show(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	m, err := s.spool.Get(id)
	if err != nil {
		writeError(w, errorOf(err))
		return
	}
	d := Detail{Message: s.summarize(m, s.now()), DelayNotified: m.DelayNotified, OnBehalfOf: m.Envelope.OnBehalfOf}
	f, err := s.spool.OpenBody(id)
	if err != nil {
		writeError(w, errorOf(err))
		return
	}
	// The header block only, never the body; with the prefix stored at acceptance (the
	// DKIM signatures), as delivery sends it.
	head, err := dsn.HeaderSection(spool.Content(m, f))
	_ = f.Close()
	if err != nil {
		s.log.Error("queue: cannot read a queued message's headers", "queue_id", id, "error", err)
		writeError(w, errorOf(err))
		return
	}
	d.Headers = strings.ReplaceAll(string(head), "\r\n", "\n")
	p := peerFrom(r.Context())
	s.log.Debug("queue: showed a message", "queue_id", id, "peer_uid", p.UID, "peer_pid", p.PID)
	writeJSON(w, http.StatusOK, d)
}

// command runs one of the commands that change the queue, and logs who asked, why,
// and what came of it.
func (s *Server) command(w http.ResponseWriter, r *http.Request) {
	id, cmd := r.PathValue("id"), r.PathValue("command")
	if id == "" {
		cmd = "retry-all"
	}
	var req Request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
		writeError(w, &Error{Code: CodeBadRequest, Message: "the request body is not a JSON request: " + err.Error()})
		return
	}
	if len(req.Reason) > maxReason {
		req.Reason = req.Reason[:maxReason]
	}
	p := peerFrom(r.Context())
	log := s.log.With("command", cmd, "queue_id", id, "peer_uid", p.UID, "peer_pid", p.PID, "reason", req.Reason)
	res, err := s.run(r, cmd, id)
	if err != nil {
		e := errorOf(err)
		log.Warn("queue: command not carried out", "code", e.Code, "error", err)
		writeError(w, e)
		return
	}
	res.Command, res.ID = cmd, id
	if res.Counts != nil {
		log.Info("queue: command carried out", "outcome", res.Outcome, "retried", res.Counts.Retried,
			"in_flight", res.Counts.InFlight, "held", res.Counts.Held, "busy", res.Counts.Busy)
	} else {
		log.Info("queue: command carried out", "outcome", res.Outcome)
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) run(r *http.Request, cmd, id string) (Result, error) {
	outcome := func(ok bool, yes, no string) string {
		if ok {
			return yes
		}
		return no
	}
	switch cmd {
	case "retry-all":
		counts, err := s.admin.RetryAll()
		return Result{Outcome: OutcomeRetried, Counts: &counts}, err
	case CmdRetry:
		inFlight, err := s.admin.Retry(id)
		return Result{Outcome: outcome(inFlight, OutcomeInFlight, OutcomeRetried)}, err
	case CmdHold:
		changed, err := s.admin.Hold(id)
		return Result{Outcome: outcome(changed, OutcomeHeld, OutcomeUnchanged)}, err
	case CmdRelease:
		changed, err := s.admin.Release(id)
		return Result{Outcome: outcome(changed, OutcomeReleased, OutcomeUnchanged)}, err
	case CmdDelete:
		return Result{Outcome: OutcomeDeleted}, s.admin.Delete(id)
	case CmdBounce:
		notified, err := s.admin.Bounce(r.Context(), id)
		return Result{Outcome: outcome(notified, OutcomeBounced, OutcomeRemoved)}, err
	}
	return Result{}, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("no command %q", cmd)}
}

// summarize turns a spool message into what list shows.
func (s *Server) summarize(m spool.Message, now time.Time) Message {
	out := Message{
		ID: m.ID, Sender: m.Envelope.Sender, Credential: m.Envelope.AuthUser, ClientIP: m.Envelope.ClientIP,
		Direction: m.Envelope.Direction, ReceivedAt: m.Envelope.ReceivedAt, Size: m.ContentSize(), Attempts: m.Attempts,
		NextAttempt: m.NextAttempt, InFlight: s.admin.InFlight(m.ID),
	}
	switch {
	case m.Held:
		out.State = StateHeld
	case out.InFlight || !m.NextAttempt.After(now):
		out.State = StateActive
	default:
		out.State = StateDeferred
	}
	for _, rs := range m.Recipients {
		out.Recipients = append(out.Recipients, Recipient{Address: rs.Address, Status: string(rs.Status),
			Attempts: rs.Attempts, LastReply: rs.LastReply, UpdatedAt: rs.UpdatedAt})
	}
	return out
}

// Query parameters of list.
const (
	qSender, qRecipient, qCredential, qState = "sender", "recipient", "credential", "state"
	qOlderThan, qNewerThan                   = "older-than", "newer-than"
)

// Values encodes f as list's query parameters.
func (f Filter) Values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{qSender: f.Sender, qRecipient: f.Recipient, qCredential: f.Credential, qState: f.State} {
		if s != "" {
			v.Set(k, s)
		}
	}
	for k, d := range map[string]time.Duration{qOlderThan: f.OlderThan, qNewerThan: f.NewerThan} {
		if d != 0 {
			v.Set(k, d.String())
		}
	}
	return v
}

func parseFilter(v url.Values) (Filter, error) {
	f := Filter{Sender: v.Get(qSender), Recipient: v.Get(qRecipient), Credential: v.Get(qCredential), State: v.Get(qState)}
	switch f.State {
	case "", StateActive, StateDeferred, StateHeld:
	default:
		return f, fmt.Errorf("state %q is not active, deferred or held", f.State)
	}
	for k, d := range map[string]*time.Duration{qOlderThan: &f.OlderThan, qNewerThan: &f.NewerThan} {
		if s := v.Get(k); s != "" {
			var err error
			if *d, err = time.ParseDuration(s); err != nil || *d < 0 {
				return f, fmt.Errorf("%s %q is not a positive duration", k, s)
			}
		}
	}
	return f, nil
}

func (f Filter) matches(m Message, now time.Time) bool {
	age := now.Sub(m.ReceivedAt)
	switch {
	case f.State != "" && m.State != f.State,
		f.Credential != "" && m.Credential != f.Credential,
		f.Sender != "" && !addressMatches(f.Sender, m.Sender),
		f.OlderThan > 0 && age <= f.OlderThan,
		f.NewerThan > 0 && age >= f.NewerThan:
		return false
	case f.Recipient == "":
		return true
	}
	for _, rs := range m.Recipients {
		if addressMatches(f.Recipient, rs.Address) {
			return true
		}
	}
	return false
}

// addressMatches says whether addr is want, or of want's domain when want is @domain;
// <> is the null sender.
func addressMatches(want, addr string) bool {
	if want == "<>" {
		return addr == ""
	}
	if domain, ok := strings.CutPrefix(want, "@"); ok {
		i := strings.LastIndexByte(addr, '@')
		return i >= 0 && strings.EqualFold(addr[i+1:], domain)
	}
	return strings.EqualFold(want, addr)
}
