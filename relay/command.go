// Package relay is the Postwarden SMTP relay: submission on 587, the inbound gateway on
// 25, a durable spool and delivery. Its configuration comes from a relay/snapshot
// document, loaded from a file or from Secrets written by the operator.
package relay

import (
	"context"
	"errors"
)

// RunCommand is the `postwarden relay` command.
func RunCommand(ctx context.Context, args []string) error {
	return errors.New("not implemented yet")
}
