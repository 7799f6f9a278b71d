package discoverystate

import (
	"encoding/json"
	"errors"
	"fmt"
)

// EncodeBatch returns b as JSON, with Version set.
func EncodeBatch(b Batch) ([]byte, error) {
	b.Version = BatchVersion
	if b.Observations == nil {
		b.Observations = []Observation{}
	}
	data, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encoding discovery batch: %w", err)
	}
	return data, nil
}

// DecodeBatch parses a batch and checks its version.
func DecodeBatch(data []byte) (Batch, error) {
	var b Batch
	if err := json.Unmarshal(data, &b); err != nil {
		return Batch{}, fmt.Errorf("decoding discovery batch: %w", err)
	}
	if b.Version != BatchVersion {
		return Batch{}, fmt.Errorf("discovery batch version %q, want %q", b.Version, BatchVersion)
	}
	if b.Journal == "" {
		return Batch{}, errors.New("discovery batch has no journal identity")
	}
	return b, nil
}
