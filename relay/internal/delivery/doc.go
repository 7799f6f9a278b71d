// Package delivery is the relay's back door: it takes queued messages from the spool
// and delivers them over SMTP. A Client makes one attempt for the recipients of one
// domain (MX lookup or a fixed route, one transaction, per-recipient outcomes) and keeps
// sessions for reuse; the sessions themselves (addresses, the non-public address guard,
// STARTTLS as the TLS policy demands) are opened by relay/outbound. A Runner decides
// what is due, routes recipients by domain from the compiled view in force (its managed
// domains and TLS policies, relay/internal/compiled), bounds concurrency, records
// outcomes in the spool, retries with backoff and sends delivery status notifications.
// Admin carries out an administrator's commands on queued messages (retry, hold,
// release, delete, bounce); it and the Runner claim a message before changing it, so a
// command never changes a message in the middle of its delivery attempt.
package delivery
