package queuecli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/postwarden/postwarden/relay/internal/queueadmin"
	"github.com/postwarden/postwarden/relay/internal/spool"
)

func runList(ctx context.Context, c *queueadmin.Client, o *options, args []string, w io.Writer) error {
	if len(args) > 0 {
		return usageError("list takes no arguments, got %q", args)
	}
	var err error
	if o.filter.OlderThan, err = parseAge("older-than", o.olderThan); err != nil {
		return err
	}
	if o.filter.NewerThan, err = parseAge("newer-than", o.newerThan); err != nil {
		return err
	}
	msgs, err := c.List(ctx, o.filter)
	if err != nil {
		return err
	}
	if o.output == "json" {
		return writeJSON(w, msgs)
	}
	if len(msgs) == 0 {
		_, err := fmt.Fprintln(w, "no queued message matches")
		return err
	}
	now := time.Now()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "ID\tSTATE\tAGE\tSIZE\tTRIES\tSENDER\tCREDENTIAL\tRECIPIENTS"
	if o.output == "wide" {
		head += "\tLAST REPLY"
	}
	fmt.Fprintln(tw, head)
	var size int64
	for _, m := range msgs {
		size += m.Size
		state := m.State
		if m.InFlight {
			state = "delivering"
		}
		rcpts, reply := pendingOf(m)
		line := fmt.Sprintf("%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s", m.ID, state, age(now.Sub(m.ReceivedAt)), m.Size,
			m.Attempts, orNull(m.Sender), orDash(m.Credential), rcpts)
		if o.output == "wide" {
			line += "\t" + orDash(reply)
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	noun := "messages"
	if len(msgs) == 1 {
		noun = "message"
	}
	_, err = fmt.Fprintf(w, "-- %d %s, %d bytes\n", len(msgs), noun, size)
	return err
}

// pendingOf names the recipients still pending ("a@x +2"; all of them when none is) and
// the first pending one's last reply.
func pendingOf(m queueadmin.Message) (rcpts, reply string) {
	var pending []string
	for _, r := range m.Recipients {
		if r.Status == string(spool.StatusPending) {
			pending = append(pending, r.Address)
			if reply == "" {
				reply = r.LastReply
			}
		}
	}
	if len(pending) == 0 {
		for _, r := range m.Recipients {
			pending = append(pending, r.Address)
		}
	}
	switch len(pending) {
	case 0:
		return "-", reply
	case 1:
		return pending[0], reply
	}
	return fmt.Sprintf("%s +%d", pending[0], len(pending)-1), reply
}

func runShow(ctx context.Context, c *queueadmin.Client, o *options, args []string, w io.Writer) error {
	id, err := oneID(args)
	if err != nil {
		return err
	}
	d, err := c.Show(ctx, id)
	if err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	if o.output == "json" {
		return writeJSON(w, d)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	field := func(name, format string, a ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{name}, a...)...) }
	field("id", "%s", d.ID)
	state := d.State
	switch {
	case d.InFlight:
		state = "active, being delivered now"
	case d.State == queueadmin.StateDeferred:
		state += fmt.Sprintf(", next attempt %s (in %s)", stamp(d.NextAttempt), age(d.NextAttempt.Sub(now)))
	case d.State == queueadmin.StateHeld:
		state += " (release it to deliver it)"
	}
	field("state", "%s", state)
	field("received", "%s (%s ago), %s, from %s", stamp(d.ReceivedAt), age(now.Sub(d.ReceivedAt)), d.Direction, orDash(d.ClientIP))
	field("sender", "<%s>", d.Sender)
	field("credential", "%s", orDash(d.Credential))
	if d.OnBehalfOf != "" {
		field("on behalf of", "%s", d.OnBehalfOf)
	}
	field("size", "%d bytes", d.Size)
	field("attempts", "%d", d.Attempts)
	if d.DelayNotified {
		field("delay notice", "sent")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "recipients:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range d.Recipients {
		fmt.Fprintf(tw, "  %s\t%s\t%d attempts\t%s\n", r.Address, r.Status, r.Attempts, orDash(r.LastReply))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "headers:")
	for line := range strings.SplitSeq(strings.TrimRight(d.Headers, "\n"), "\n") {
		fmt.Fprintln(w, "  "+line)
	}
	return nil
}

func runRetry(ctx context.Context, c *queueadmin.Client, o *options, args []string, w io.Writer) error {
	if o.all == (len(args) > 0) {
		return usageError("retry takes one message id or --all")
	}
	if !o.all {
		return runCommand(queueadmin.CmdRetry)(ctx, c, o, args, w)
	}
	res, err := c.Command(ctx, queueadmin.CmdRetry, "", o.reason)
	if err != nil {
		return err
	}
	if o.output == "json" {
		return writeJSON(w, res)
	}
	n := res.Counts
	_, err = fmt.Fprintf(w, "%d due now, %d being delivered already, %d held and left alone, %d being changed by another command\n",
		n.Retried, n.InFlight, n.Held, n.Busy)
	return err
}

// said is what a command's outcome reads as.
var said = map[string]string{
	queueadmin.OutcomeRetried:  "due now",
	queueadmin.OutcomeInFlight: "being delivered now: nothing to do",
	queueadmin.OutcomeHeld:     "held: it is not attempted until released",
	queueadmin.OutcomeReleased: "released: it is attempted at its next attempt time (retry it to attempt it now)",
	queueadmin.OutcomeDeleted:  "deleted: nobody was told",
	queueadmin.OutcomeBounced:  "bounced: its pending recipients failed and a bounce to its sender is queued",
	queueadmin.OutcomeRemoved:  "removed without a bounce: its sender is the null sender, or no recipient was left to report",
}

// runCommand runs a command on one message.
func runCommand(cmd string) func(context.Context, *queueadmin.Client, *options, []string, io.Writer) error {
	return func(ctx context.Context, c *queueadmin.Client, o *options, args []string, w io.Writer) error {
		id, err := oneID(args)
		if err != nil {
			return err
		}
		res, err := c.Command(ctx, cmd, id, o.reason)
		if err != nil {
			return fmt.Errorf("%s %s: %w", cmd, id, err)
		}
		if o.output == "json" {
			return writeJSON(w, res)
		}
		text := said[res.Outcome]
		if res.Outcome == queueadmin.OutcomeUnchanged {
			text = map[string]string{queueadmin.CmdHold: "held already", queueadmin.CmdRelease: "was not held"}[cmd]
		}
		_, err = fmt.Fprintf(w, "%s: %s\n", id, text)
		return err
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// age is a short duration for people: 45s, 12m, 5h03m, 3d04h.
func age(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orNull(sender string) string {
	if sender == "" {
		return "<>"
	}
	return sender
}
