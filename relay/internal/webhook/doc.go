// Package webhook sends delivery events to the HTTPS endpoints managed domains name
// (snapshot.Domain.DeliveryEvents): one signed JSON POST per recipient outcome
// (delivered, deferred, bounced, expired). It owns the whole way from an outcome to the
// receiver's 2xx: filtering by the domain's endpoint and event types, the bounded
// hand-off from delivery, the pending events on disk, signing, ordering, retries and
// their metrics. Delivery only calls Sender.Enqueue, which never blocks.
//
// Guarantees and bounds:
//   - Enqueue puts the event in a channel of Options.QueueSize; when it is full the
//     event is dropped and counted (reason queue_full), never waited for.
//   - One goroutine writes each event to its own file under Options.Dir (in the spool
//     volume), at most Options.MaxDiskBytes in all, and for one endpoint at most half
//     of what the others leave free, so that one receiver down for long cannot take
//     the room of the others; beyond, new events are dropped and counted (disk_full). Files are not fsync'd: a process crash loses only the events
//     still in the channel, a machine crash also those the kernel had not written out.
//   - Events for one endpoint (URL) are sent one at a time, in the order they were
//     written; endpoints proceed independently, at most Options.Concurrency at once.
//   - A failed POST (no connection, timeout, 3xx, 408, 429, 5xx) is retried with
//     exponential backoff from Options.RetryFirst up to Options.RetryMax; an event
//     older than Options.GiveUp is dropped (expired), as is one the receiver refused
//     with another 4xx (rejected), so one bad event cannot hold its endpoint up.
//   - Delivery is at least once: an event whose 2xx came just before a crash or a
//     shutdown is sent again. Receivers deduplicate by the event's id.
//
// The POST carries X-Postwarden-Timestamp (Unix seconds) and X-Postwarden-Signature,
// "sha256=" and the hex HMAC-SHA256, keyed by the domain's secret, of
// "<timestamp>.<body>"; Verify checks both. The HTTP client dials through the relay's
// non-public address guard (outbound.Dialer.DialGuarded), so a tenant's URL cannot
// reach the cluster's own services, and verifies certificates against the pool
// Options.RootCAs returns before each POST: the system roots, plus the relay's
// --delivery-events-ca-file when it has one (reloaded with the config).
package webhook
