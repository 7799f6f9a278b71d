//go:build cluster

package cluster

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	relayv1alpha1 "github.com/postwarden/postwarden/api/v1alpha1"
)

// limitChange lowers the sample credential's window limit to one message and measures
// how long after the patch the relays answer 451 4.7.1 (the two relays each admit their
// share of one, rounded up: at most two more messages); then checks that the owner is
// told, with an Event and in status.limitReached, and that status shows its usage.
func limitChange(t *testing.T, sub submitter) time.Duration {
	t.Helper()
	start := time.Now()
	kube(t, "", "patch", "smtpcredential", "-n", "mail", "billing-app", "--type=merge",
		"-p", `{"spec":{"limits":{"messagesPerWindow":1,"window":"10m"}}}`)
	var took time.Duration
	accepted := 0
	eventually(t, time.Minute, "the lowered limit refuses a message", func() error {
		c, err := sub.dial()
		if err != nil {
			return err
		}
		defer c.Close()
		err = send(c, sub.login.sender, "someone@example.org", fmt.Sprintf("limit-%d@cluster.test", accepted))
		var se *smtp.SMTPError
		switch {
		case err == nil:
			accepted++
			return errors.New("still accepted")
		case errors.As(err, &se) && se.Code == 451 && se.EnhancedCode == (smtp.EnhancedCode{4, 7, 1}):
			took = time.Since(start)
			return nil
		}
		return err
	})
	if accepted > 50 {
		t.Errorf("%d messages were accepted after the limit was lowered", accepted)
	}
	eventually(t, 2*time.Minute, "the credential's owner is told", func() error {
		events := kube(t, "", "get", "events.events.k8s.io", "-n", "mail", "--field-selector",
			"reason="+relayv1alpha1.ReasonSendingLimitReached, "-o", "name")
		if strings.TrimSpace(events) == "" {
			return errors.New("no SendingLimitReached Event")
		}
		if limit := kube(t, "", "get", "smtpcredential", "-n", "mail", "billing-app", "-o",
			"jsonpath={.status.limitReached.limit}"); limit != "messages_per_window" {
			return fmt.Errorf("status.limitReached.limit %q", limit)
		}
		// The load sent hundreds of messages with it today.
		if sent := kube(t, "", "get", "smtpcredential", "-n", "mail", "billing-app", "-o",
			"jsonpath={.status.usage.messages24h}"); sent == "" || sent == "0" {
			return fmt.Errorf("status.usage.messages24h %q", sent)
		}
		return nil
	})
	return took
}
