// Package outbound is Postwarden's one SMTP client. Delivery, the verification callouts
// of SMTP Discovery and the operator's report mail all open their connections here, so
// that what a connection must check is written once.
//
// It owns everything up to a session ready for MAIL FROM:
//   - resolving a host's addresses (through the relay's DNS resolver, or the system's),
//     and the order and number of addresses tried;
//   - refusing addresses that are not public (loopback, private, link-local, CGNAT,
//     benchmarking, documentation, multicast and the like) unless an admin allowed
//     their network, checked on the exact address dialed;
//   - the connect timeout, the greeting, EHLO with the HELO fallback;
//   - STARTTLS as a tlspolicy.Policy asks, with the opportunistic fallback to plaintext,
//     and the refusal of any data a server sends unasked after its EHLO or STARTTLS
//     reply (the STARTTLS command injection defence);
//   - AUTH PLAIN or LOGIN, only over TLS;
//   - what TLS was used (TLSInfo), and the errors of a host that could not take mail,
//     with their enhanced status codes (Error, ReplyOf, StageError).
//
// It hands back a go-smtp client; the transaction, pooling and outcomes belong to the
// caller.
package outbound
