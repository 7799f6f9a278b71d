// Package delivery is the relay's back door: it takes queued messages from the spool
// and delivers them over SMTP. A Client makes one attempt for the recipients of one
// domain (MX lookup or a fixed route, one transaction, per-recipient outcomes) and keeps
// sessions for reuse; the sessions themselves (addresses, the non-public address guard,
// STARTTLS as the TLS policy demands) are opened by relay/outbound. A Runner decides
// what is due, routes recipients by domain from the compiled view in force (its managed
// domains and TLS policies, relay/internal/compiled), bounds concurrency, records
// outcomes in the spool, retries with backoff and sends delivery status notifications.
package delivery
