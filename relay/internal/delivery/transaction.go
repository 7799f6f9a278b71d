package delivery

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/postwarden/postwarden/relay/outbound"
)

// attempt runs the transaction on one address. done is false when the host could not
// take it and the next one should be tried; res may then hold some recipients'
// replies from this host, which the next host's transaction (or the final failure)
// overwrites in full.
func (cl *Client) attempt(ctx context.Context, key poolKey, req Request, res *Result) (done bool, err error) {
	for {
		s, reused := cl.get(key)
		if s == nil {
			s, err = cl.open(ctx, key, req.Route)
			if err != nil {
				return false, err
			}
		}
		done, retry, err := cl.transact(ctx, s, req, res)
		if retry && reused {
			continue // a pooled session went stale; open a fresh one
		}
		return done, err
	}
}

// transact runs MAIL, RCPT for every recipient, and DATA on s. retry is set when the
// session failed before any command got a reply, which on a pooled session means it
// had gone stale.
func (cl *Client) transact(ctx context.Context, s *session, req Request, res *Result) (done, retry bool, err error) {
	stop := context.AfterFunc(ctx, func() { s.close() })
	defer stop()
	start := cl.now()
	c := s.c
	opts := &smtp.MailOptions{Size: req.Size}
	if !isASCII(req.Sender) || slices.ContainsFunc(req.Recipients, func(a string) bool { return !isASCII(a) }) {
		if ok, _ := c.Extension("SMTPUTF8"); !ok {
			for i, a := range req.Recipients {
				res.Recipients[i] = RecipientResult{Address: a, Outcome: Failed, Status: "5.6.7",
					Reason: s.host + " does not support SMTPUTF8, which the addresses need"}
			}
			cl.recordTLS(s, res)
			cl.put(s)
			return true, false, nil
		}
		opts.UTF8 = true
	}
	if s.pipelining {
		return cl.transactPipelined(s, req, res, opts, start)
	}
	if err := c.Mail(req.Sender, opts); err != nil {
		code, _, _, ok := outbound.ReplyOf(err)
		if !ok || code == 421 {
			// An I/O error or 421 (closing) before anything happened: on a pooled
			// session it only means the server dropped it while idle.
			s.close()
			return false, true, outbound.StageError(s.host, "MAIL FROM", err)
		}
		out := classify("", err)
		for i, a := range req.Recipients {
			out.Address = a
			res.Recipients[i] = out
		}
		cl.finish(s, res, true)
		return true, false, nil
	}
	var accepted []int
	for i, a := range req.Recipients {
		if err := c.Rcpt(a, nil); err != nil {
			if _, _, _, ok := outbound.ReplyOf(err); !ok {
				s.close()
				return false, false, outbound.StageError(s.host, "RCPT TO", err)
			}
			res.Recipients[i] = classify(a, err)
			continue
		}
		accepted = append(accepted, i)
	}
	if len(accepted) == 0 {
		cl.finish(s, res, true)
		return true, false, nil
	}
	setAccepted := acceptedSetter(req, res, accepted)
	w, err := c.Data()
	if err != nil {
		if _, _, _, ok := outbound.ReplyOf(err); !ok {
			s.close()
			return false, false, outbound.StageError(s.host, "DATA", err)
		}
		setAccepted(classify("", err))
		cl.finish(s, res, true)
		return true, false, nil
	}
	if _, err := req.Body.Seek(0, io.SeekStart); err != nil {
		s.close()
		setAccepted(RecipientResult{Outcome: Deferred, Status: "4.3.0", Reason: "reading the queued message failed"})
		return true, false, nil
	}
	if _, err := io.Copy(w, req.Body); err != nil {
		// Without the final dot nothing was delivered; another host may do better.
		s.close()
		return false, false, outbound.StageError(s.host, "message transfer", err)
	}
	resp, err := w.CloseWithResponse()
	var text string
	if resp != nil {
		text = resp.StatusText
	}
	cl.concluded(s, res, start, text, err, setAccepted)
	return true, false, nil
}

// concluded records the reply to the final dot (its text, or err) for the accepted
// recipients, and returns the session to the pool or, when no reply came, drops it.
func (cl *Client) concluded(s *session, res *Result, start time.Time, text string, err error, setAccepted func(RecipientResult)) {
	cl.metrics.TransactionSeconds.Observe(cl.now().Sub(start).Seconds())
	switch {
	case err == nil:
		setAccepted(RecipientResult{Outcome: Delivered, Status: "2.0.0", Reply: "250 " + text})
		cl.finish(s, res, false)
	default:
		if _, _, _, ok := outbound.ReplyOf(err); !ok {
			// The remote may have the message already; a retry risks a duplicate.
			s.close()
			setAccepted(RecipientResult{Outcome: Deferred, Status: "4.4.2", Reason: fmt.Sprintf("connection to %s lost after the message was sent", s.host)})
			cl.recordTLS(s, res)
			return
		}
		setAccepted(classify("", err))
		cl.finish(s, res, false)
	}
}

// acceptedSetter returns a function that gives every accepted recipient (indexes into
// req.Recipients) the same outcome.
func acceptedSetter(req Request, res *Result, accepted []int) func(RecipientResult) {
	return func(r RecipientResult) {
		for _, i := range accepted {
			r.Address = req.Recipients[i]
			res.Recipients[i] = r
		}
	}
}

// finish records the session's TLS facts in res and returns the session to the pool,
// after RSET when the transaction was abandoned before the final dot.
func (cl *Client) finish(s *session, res *Result, reset bool) {
	cl.recordTLS(s, res)
	if reset {
		if err := s.c.Reset(); err != nil {
			s.close()
			return
		}
	}
	cl.put(s)
}

func (cl *Client) recordTLS(s *session, res *Result) {
	res.RemoteMTA, res.RemoteAddr, res.TLS = s.host, s.key.ep.Addr.Addr(), s.tls
	verified := "false"
	if s.tls.Verified {
		verified = "true"
	}
	cl.metrics.TLS.WithLabelValues(policyLabel(s.key.policy), s.tls.VersionName(), s.tls.CipherName(), verified).Inc()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
