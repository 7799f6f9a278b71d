// Package dkim signs the relay's outbound mail with DKIM (RFC 6376; Ed25519 keys per
// RFC 8463). A Keyring holds the parsed private keys of every managed domain, compiled
// once per config (relay/internal/compiled) from the snapshot's snapshot.DKIMKey
// entries and the relay secrets that hold the keys; a MessageSigner signs one message
// with one domain's keys, one signature per key, as the message streams past.
//
// # Signing once, before the 250
//
// smtpd signs a message while it streams into the spool, in the same pass that writes
// it to disk, and the spool stores the DKIM-Signature fields in the message's state
// (spool.Envelope.Prepend), fsync'd with the body before the client gets its 250.
// Delivery sends that prefix and the body as they are and never signs again. The
// alternative, signing at each delivery attempt, was turned down because:
//
//   - the body would be read and hashed once more per attempt and per recipient
//     domain, where now it is hashed once, while it is in the page cache anyway;
//   - a signature is a statement about the message as accepted: the signature that
//     goes out is the one made when the relay took responsibility, under the keys of
//     the config in force then, so a key rotation or a key that fails to load later
//     never leaves a queued message unsigned or signed by a selector it was not
//     accepted under (the old selector's record stays published while mail signed with
//     it can still be queued; see docs/relay-config.md);
//   - a failure to sign is a temporary refusal the client can retry, not a message
//     that is already promised and then goes out unsigned.
//
// Crash safety follows from the spool: a message is durable, with its signatures, when
// and only when the 250 is sent. A crash before the state is fsync'd leaves garbage
// that the spool removes at start-up and the client sends again (and it is signed
// again); a crash after it leaves the message and its signatures together. A signature
// carries t= (the signing time) and no x=, so a message that waits in the queue for
// days still verifies.
//
// Signatures are relaxed/relaxed, d= the From: domain, and cover the header fields of
// signedFields, each oversigned (see headerKeys). Our own Received: field is never
// signed: later hops may legitimately rewrite or drop trace fields.
package dkim
