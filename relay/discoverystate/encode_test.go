package discoverystate

import (
	"reflect"
	"testing"
	"time"
)

func TestBatchRoundTrips(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b := Batch{Journal: "j", Relay: "relay-0", Observations: []Observation{
		{Seq: 1, Kind: Verified, Address: "bob@example.com", Time: at},
		{Seq: 2, Kind: Delivered, Address: "bob@example.com", Time: at.Add(time.Hour)},
	}}
	data, err := EncodeBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeBatch(data)
	if err != nil {
		t.Fatal(err)
	}
	b.Version = BatchVersion
	if !reflect.DeepEqual(back, b) {
		t.Fatalf("decoded %+v, want %+v", back, b)
	}
}

func TestDecodeBatchRejectsOtherVersions(t *testing.T) {
	tests := map[string]string{
		"an unknown batch version is refused":  `{"version":"x","journal":"j"}`,
		"a batch without a journal is refused": `{"version":"` + BatchVersion + `"}`,
		"malformed JSON is refused":            `{nope`,
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := DecodeBatch([]byte(data)); err == nil {
				t.Fatal("decoded without error")
			}
		})
	}
}

func TestAckRoundTrips(t *testing.T) {
	if j, seq, ok := ParseAck(AckValue("j1", 42)); !ok || j != "j1" || seq != 42 {
		t.Fatalf("ParseAck(AckValue) = %q, %d, %v", j, seq, ok)
	}
	for _, v := range []string{"", "j1", "/42", "j1/x"} {
		if _, _, ok := ParseAck(v); ok {
			t.Errorf("ParseAck(%q) accepted", v)
		}
	}
}
