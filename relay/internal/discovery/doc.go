// Package discovery is the relay side of SMTP Discovery. Verifier answers the SMTP
// session's question about an unlisted recipient of a managed domain by asking the
// domain's own server (a verification callout: EHLO, MAIL FROM:<>, RCPT TO, QUIT),
// with a bounded cache of positive and negative answers, one callout per address at a
// time however many sessions ask, and rate and concurrency limits per destination
// that defer rather than queue. Journal records what the relay observes (callout
// outcomes, clean deliveries, outbound senders) durably in the spool volume, and
// Shipper publishes it through a Publisher (ConfigMapPublisher in Kubernetes) as
// relay/discoverystate batches, for the operator to merge into its own state
// (controllers/discovery/state). docs/discovery.md has the whole design.
package discovery
