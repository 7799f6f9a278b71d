package relay

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/postwarden/postwarden/relay/internal/delivery"
	"github.com/postwarden/postwarden/relay/internal/queueadmin"
	"github.com/postwarden/postwarden/relay/internal/queuecli"
)

// RunQueueCommand is the `postwarden queue` command: it manages the queue of the relay
// running on this spool, through its admin socket. Its errors carry the exit code the
// process should end with (an ExitCode method).
func RunQueueCommand(ctx context.Context, args []string) error {
	return queuecli.Run(ctx, args, os.Stdout, os.Stderr)
}

// adminSocketDefault is the --admin-socket default as help shows it; it stands for the
// socket in the spool folder, wherever --spool-dir puts that.
const adminSocketDefault = "<spool-dir>/" + queueadmin.SocketName

// DefaultAdminSocket is where the relay puts its admin socket, and `postwarden queue`
// looks for it, for a spool folder.
func DefaultAdminSocket(spoolDir string) string {
	return filepath.Join(spoolDir, queueadmin.SocketName)
}

// newAdmin creates the admin socket for the queue. Its commands go through the runner,
// which keeps them off messages being delivered; a relay that does not deliver has
// nothing to keep them from.
func (r *Relay) newAdmin() error {
	admin := delivery.NewAdmin(r.spool)
	if r.runner != nil {
		admin = r.runner.Admin()
	}
	var err error
	r.admin, err = queueadmin.Listen(r.cfg.AdminSocket, r.spool, admin, r.log.With("component", "queue"))
	return err
}

// closeAdmin lets queue commands in progress finish, then removes the socket.
func (r *Relay) closeAdmin() {
	if r.admin == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.admin.Close(ctx); err != nil {
		r.log.Warn("closing the admin socket", "error", err)
	}
	r.admin = nil
}
