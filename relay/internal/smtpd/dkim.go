package smtpd

import (
	"fmt"

	"github.com/postwarden/postwarden/relay/internal/dkim"
	"github.com/postwarden/postwarden/relay/internal/spool"
)

// startSigning returns a signer for an outbound message whose From: domain has usable
// DKIM keys in the keys pinned for the transaction, already fed the header section,
// with those keys; nil for a message that goes unsigned: inbound mail, which is
// someone else's to sign, and mail of a domain without a usable key (the domain
// publishes none yet, or its key is not loaded), which goes out as it would without
// DKIM rather than be refused. Such messages cost no signing work at all.
func (ss *session) startSigning(txn *transaction, header []byte) (*dkim.MessageSigner, []dkim.Key, error) {
	if txn.direction != directionOutbound || txn.fromDomain == "" {
		return nil, nil, nil
	}
	keys := ss.keys.Keys(txn.fromDomain)
	if len(keys) == 0 {
		return nil, nil, nil
	}
	signer, err := dkim.NewMessageSigner(txn.fromDomain, keys, header)
	if err != nil {
		return nil, nil, fmt.Errorf("starting to sign: %w", err)
	}
	return signer, keys, nil
}

// sealWith puts the signatures before the message once the spool has read its last
// byte, so they are stored with it before the 250. A signature that cannot be made is
// an internal error (451): a domain that signs its mail never has it go out unsigned
// because of a failure, which a receiver enforcing DMARC would hold against it.
func sealWith(signer *dkim.MessageSigner) func(*spool.Envelope) error {
	return func(env *spool.Envelope) error {
		fields, err := signer.Finish()
		if err != nil {
			return err
		}
		env.Prepend = fields
		return nil
	}
}

// signed records a message the queue holds with its signatures: the tracking line's
// selectors and the metric by algorithm.
func (ss *session) signed(txn *transaction, keys []dkim.Key) {
	for _, k := range keys {
		txn.dkim = append(txn.dkim, k.Selector)
		ss.srv.metrics.DKIMSigned.WithLabelValues(k.Algorithm).Inc()
	}
}

// keyringNow returns the DKIM keys in force, nil (none) without Options.DKIM.
func (s *Server) keyringNow() *dkim.Keyring {
	if s.opts.DKIM == nil {
		return nil
	}
	return s.opts.DKIM()
}
