package snapshot

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
)

// How a snapshot is stored in Kubernetes. The operator writes Secrets in the relays'
// namespace, each labelled LabelConfig=<config name>, holding one shard of the gzipped
// canonical JSON under DataKey. Annotations say which snapshot (AnnotationHash) and which
// part (AnnotationShard, AnnotationShards) each Secret holds. A relay applies a snapshot
// only when it has every shard of one hash and the assembled content hashes to it.
const (
	LabelConfig      = "relay.postwarden.dev/config"
	AnnotationHash   = "relay.postwarden.dev/config-hash"
	AnnotationShard  = "relay.postwarden.dev/shard"
	AnnotationShards = "relay.postwarden.dev/shards"
	DataKey          = "snapshot.json.gz"

	// MaxShardBytes keeps each Secret well under the API server's 1 MiB limit.
	MaxShardBytes = 900 << 10
)

// How a relay gets the secrets a snapshot names but never holds (relay secrets): the
// credentials a domain's hop logs in with (Endpoint.AuthSecret, the keys username and
// password, type kubernetes.io/basic-auth) and the HMAC key its delivery events are
// signed with (Webhook.SecretName, the key WebhookSecretKey). The operator copies them
// from the tenant's Secret into a Secret of the relays' namespace labelled
// LabelRelaySecret=true; the relay reads only such Secrets of its own namespace. DKIM
// private keys (DKIMKey.SecretName, the key DKIMPrivateKeyKey) are relay secrets too,
// but the operator generates them there: they never exist in a tenant's namespace.
const (
	LabelRelaySecret  = "relay.postwarden.dev/relay-secret"
	WebhookSecretKey  = "secret"
	DKIMPrivateKeyKey = "private.pem"
)

// How a relay replica reports what it enforces. Each replica keeps a coordination.k8s.io
// Lease named LeasePrefix+<pod name> in its namespace, labelled LabelRelayStatus=true,
// renewed while the replica is ready; AnnotationHash on the Lease is the hash of the
// snapshot the replica has applied. A Lease past its renewTime+leaseDurationSeconds
// belongs to a replica that is gone or not ready.
const (
	LabelRelayStatus = "relay.postwarden.dev/relay-status"
	LeasePrefix      = "postwarden-relay-"
)

// Shard is one part of an encoded snapshot.
type Shard struct {
	// Hash is the Snapshot.Hash of the whole.
	Hash string
	// Index is this part's position, from 0; Count is the number of parts.
	Index, Count int
	Data         []byte
}

// Annotations returns the annotations that describe the shard on its Secret.
func (sh Shard) Annotations() map[string]string {
	return map[string]string{
		AnnotationHash:   sh.Hash,
		AnnotationShard:  strconv.Itoa(sh.Index),
		AnnotationShards: strconv.Itoa(sh.Count),
	}
}

// ShardFromAnnotations rebuilds a Shard from a Secret's annotations and data.
func ShardFromAnnotations(annotations map[string]string, data []byte) (Shard, error) {
	index, err1 := strconv.Atoi(annotations[AnnotationShard])
	count, err2 := strconv.Atoi(annotations[AnnotationShards])
	if err := errors.Join(err1, err2); err != nil || annotations[AnnotationHash] == "" {
		return Shard{}, fmt.Errorf("shard annotations %s, %s and %s are missing or malformed",
			AnnotationHash, AnnotationShard, AnnotationShards)
	}
	return Shard{Hash: annotations[AnnotationHash], Index: index, Count: count, Data: data}, nil
}

// Encode returns s as gzipped canonical JSON, split into shards of at most maxBytes
// (MaxShardBytes when 0). The same snapshot always gives the same shards.
func Encode(s *Snapshot, maxBytes int) ([]Shard, error) {
	if maxBytes <= 0 {
		maxBytes = MaxShardBytes
	}
	body, err := s.Marshal()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	// The gzip header carries no name or time, so the bytes depend on content only.
	if _, err := zw.Write(body); err != nil {
		return nil, fmt.Errorf("compressing snapshot: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compressing snapshot: %w", err)
	}
	packed := buf.Bytes()
	count := max(1, (len(packed)+maxBytes-1)/maxBytes)
	shards := make([]Shard, 0, count)
	for i := range count {
		end := min(len(packed), (i+1)*maxBytes)
		shards = append(shards, Shard{Hash: s.Hash, Index: i, Count: count, Data: packed[i*maxBytes : end]})
	}
	return shards, nil
}

// Assemble rebuilds and validates a snapshot from its shards, in any order. It fails
// when shards of different snapshots are mixed, when one is missing, or when the
// content does not match the hash.
func Assemble(shards []Shard) (*Snapshot, error) {
	if len(shards) == 0 {
		return nil, errors.New("no snapshot shards")
	}
	sorted := slices.Clone(shards)
	slices.SortFunc(sorted, func(a, b Shard) int { return a.Index - b.Index })
	hash, count := sorted[0].Hash, sorted[0].Count
	for _, sh := range sorted {
		if sh.Hash != hash || sh.Count != count {
			return nil, fmt.Errorf("snapshot %s: shards do not belong together (shard %d of %d for %s)",
				ShortHash(hash), sh.Index, sh.Count, ShortHash(sh.Hash))
		}
	}
	var packed bytes.Buffer
	for i, sh := range sorted {
		if sh.Index != i || len(sorted) != count {
			return nil, fmt.Errorf("snapshot %s: shard %d of %d is missing (have %d)", ShortHash(hash), i, count, len(sorted))
		}
		packed.Write(sh.Data)
	}
	zr, err := gzip.NewReader(&packed)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", ShortHash(hash), err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: decompressing: %w", ShortHash(hash), err)
	}
	s, err := Unmarshal(body)
	if err != nil {
		return nil, err
	}
	if s.Hash != hash {
		return nil, fmt.Errorf("snapshot content hashes to %s, shards say %s", ShortHash(s.Hash), ShortHash(hash))
	}
	return s, nil
}

// ShortHash is the first 12 characters of a snapshot hash: enough to tell snapshots
// apart in logs, status and Events.
func ShortHash(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}
