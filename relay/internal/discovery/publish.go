package discovery

import (
	"context"
	"log/slog"
	"time"

	"github.com/postwarden/postwarden/relay/discoverystate"
)

// Publisher makes a batch visible to the operator and tells how far the operator has
// merged this journal.
type Publisher interface {
	// Publish replaces the replica's published batch with b (if it differs) and returns
	// the highest Seq of journal b.Journal that the operator has acknowledged, 0 if none.
	Publish(ctx context.Context, b discoverystate.Batch) (acked uint64, err error)
}

// Defaults of a Shipper.
const (
	DefaultShipInterval = 15 * time.Second
	// DefaultMaxBatchBytes leaves room in a ConfigMap (1 MiB) for metadata and for
	// the JSON around the observations.
	DefaultMaxBatchBytes = 700 << 10
)

// Shipper publishes the journal's unacknowledged observations periodically and
// forgets those the operator acknowledges.
type Shipper struct {
	Journal   *Journal
	Publisher Publisher
	// Relay is the replica's pod name, recorded in batches for humans.
	Relay         string
	Interval      time.Duration
	MaxBatchBytes int
	Logger        *slog.Logger
}

// ShipOnce publishes one batch and applies the acknowledgement it learns.
func (s *Shipper) ShipOnce(ctx context.Context) error {
	maxBytes := s.MaxBatchBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBatchBytes
	}
	acked, err := s.Publisher.Publish(ctx, s.Journal.Batch(s.Relay, maxBytes))
	if err != nil {
		return err
	}
	return s.Journal.Ack(acked)
}

// Run ships every Interval until ctx ends, and once more on the way out.
func (s *Shipper) Run(ctx context.Context) {
	interval := s.Interval
	if interval <= 0 {
		interval = DefaultShipInterval
	}
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.ShipOnce(ctx); err != nil && ctx.Err() == nil {
			log.Warn("publishing discovery observations", "error", err, "pending", s.Journal.Pending())
		}
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := s.ShipOnce(final); err != nil {
				log.Warn("publishing discovery observations at shutdown", "error", err)
			}
			cancel()
			return
		case <-t.C:
		}
	}
}
