package delivery

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/postwarden/postwarden/relay/internal/compiled"
	"github.com/postwarden/postwarden/relay/internal/dsn"
	"github.com/postwarden/postwarden/relay/internal/spool"
	"github.com/postwarden/postwarden/relay/internal/tracking"
)

// formatReply packs an outcome into RecipientState.LastReply as
// "status; remote-mta; text", where remote-mta is empty when text is a local reason
// rather than the remote server's reply. The DSN reads it back with parseReply.
func formatReply(status, host, text string) string {
	return status + "; " + host + "; " + strings.Join(strings.Fields(text), " ")
}

func parseReply(s string) (status, host, text string) {
	parts := strings.SplitN(s, "; ", 3)
	if len(parts) != 3 {
		return "", "", s
	}
	return parts[0], parts[1], parts[2]
}

// notify queues a bounce (the failed recipients) or a delay notice (the pending ones)
// to m's sender, from the null sender so it can never bounce in turn.
func (r *Runner) notify(ctx context.Context, m spool.Message, view *compiled.View, delay bool) error {
	report := dsn.Report{
		ReportingMTA: r.opts.Hostname, To: m.Envelope.Sender, QueueID: m.ID,
		Arrival: m.Envelope.ReceivedAt, Date: r.clock.Now(),
	}
	for _, rs := range m.Recipients {
		var action dsn.Action
		switch {
		case delay && rs.Status == spool.StatusPending:
			action = dsn.Delayed
		case !delay && rs.Status == spool.StatusFailed:
			action = dsn.Failed
		default:
			continue
		}
		status, host, text := parseReply(rs.LastReply)
		rc := dsn.Recipient{Address: rs.Address, Action: action, Status: status, LastAttempt: rs.UpdatedAt}
		if action == dsn.Failed && status != "" && status[0] == '4' && !strings.HasPrefix(status, "4.4.7") {
			rc.Status = "5" + status[1:]
		}
		if status == "" {
			rc.Status = map[dsn.Action]string{dsn.Failed: "5.0.0", dsn.Delayed: "4.0.0"}[action]
		}
		if host != "" {
			rc.RemoteMTA, rc.Reply = host, text
		} else {
			rc.Reason = text
		}
		if delay {
			rc.RetryUntil = m.Envelope.ReceivedAt.Add(r.retry.Lifetime)
		}
		report.Recipients = append(report.Recipients, rc)
	}
	if len(report.Recipients) == 0 {
		return nil
	}
	f, err := r.opts.Spool.OpenBody(m.ID)
	if err != nil {
		return fmt.Errorf("opening the original message: %w", err)
	}
	report.Headers, err = dsn.HeaderSection(spool.Content(m, f)) // with its signatures, as it went out
	_ = f.Close()
	if err != nil {
		return err
	}
	raw, err := dsn.Build(report)
	if err != nil {
		return err
	}
	direction := DirectionOutbound
	if isManaged(view, domainOf(m.Envelope.Sender)) {
		direction = DirectionInbound
	}
	env := spool.Envelope{Sender: "", Recipients: []string{m.Envelope.Sender}, Direction: direction, ReceivedAt: r.clock.Now(),
		OnBehalfOf: onBehalfOf(m.Envelope.Sender, report.Recipients, view)}
	id, err := r.opts.Spool.Accept(ctx, env, bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("queueing the notification: %w", err)
	}
	line := tracking.Notification{QueueID: m.ID, DSNQueueID: id, Kind: tracking.DSNBounce, To: m.Envelope.Sender}
	if delay {
		line.Kind = tracking.DSNDelay
	}
	for _, rc := range report.Recipients {
		line.Recipients = append(line.Recipients, rc.Address)
	}
	r.metrics.Notifications.WithLabelValues(line.Kind).Inc()
	line.Log(context.Background(), r.log)
	return nil
}

// onBehalfOf names the managed domain a notification speaks for: the sender's, or else
// that of the first reported recipient of a managed domain (mail received for a customer
// that its server refused). Only reported recipients count: a message received for
// several tenants' domains is reported on by the tenant whose recipient failed.
func onBehalfOf(sender string, reported []dsn.Recipient, view *compiled.View) string {
	if d := domainOf(sender); isManaged(view, d) {
		return d
	}
	for _, rc := range reported {
		if d := domainOf(rc.Address); isManaged(view, d) {
			return d
		}
	}
	return ""
}
